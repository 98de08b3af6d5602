"""tests/system/browser.py: its PNG reader against PNGs built here by hand (every filter
type), and one real headless Chromium against a page served on loopback: it sees text
change, its screenshots are not blank, Selenium Manager never runs, and no process of
it outlives the ``with``."""

from __future__ import annotations

import http.server
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest

from tests.system.browser import (
    browser,
    browser_processes,
    chromium_paths,
    element_screenshot,
    png_facts,
    png_rows,
    processes,
    screenshot,
    wait_text,
)

# --- PNGs built by hand ---------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _paeth_predictor(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _filtered(kind: int, row: bytes, prior: bytes, bpp: int) -> bytes:
    """``row`` filtered with filter ``kind`` (the encoder's side, written from the spec
    independently of the decoder under test)."""
    out = bytearray()
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        predicted = (0, a, b, (a + b) // 2, _paeth_predictor(a, b, c))[kind]
        out.append((x - predicted) % 256)
    return bytes(out)


def make_png(
    path: Path, rows: Sequence[bytes], width: int, *, alpha: bool, filters: Sequence[int]
) -> Path:
    """A PNG of ``rows`` (raw RGB or RGBA bytes); row y filtered with
    ``filters[y % len(filters)]``."""
    bpp = 4 if alpha else 3
    header = struct.pack(">IIBBBBB", width, len(rows), 8, 6 if alpha else 2, 0, 0, 0)
    raw = bytearray()
    prior = bytes(width * bpp)
    for y, row in enumerate(rows):
        assert len(row) == width * bpp
        kind = filters[y % len(filters)]
        raw += bytes([kind]) + _filtered(kind, row, prior, bpp)
        prior = row
    data = zlib.compress(bytes(raw))
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    png += _chunk(b"IDAT", data[: len(data) // 2]) + _chunk(b"IDAT", data[len(data) // 2 :])
    path.write_bytes(png + _chunk(b"IEND", b""))
    return path


def _noise(width: int, height: int, bpp: int) -> list[bytes]:
    """Rows of varied bytes, so every predictor (and wrap-around mod 256) matters."""
    return [
        bytes((x * 37 + y * 91 + (x * y) % 13 * 17) % 256 for x in range(width * bpp))
        for y in range(height)
    ]


@pytest.mark.parametrize("alpha", [False, True], ids=["rgb", "rgba"])
@pytest.mark.parametrize(
    "filters",
    [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]],
    ids=["none", "sub", "up", "average", "paeth", "each-in-turn", "each-reversed"],
)
def test_each_png_filter_decodes_to_the_pixels_encoded(
    tmp_path: Path, alpha: bool, filters: list[int]
) -> None:
    bpp = 4 if alpha else 3
    pixels = _noise(11, 9, bpp)
    path = make_png(tmp_path / "noise.png", pixels, 11, alpha=alpha, filters=filters)
    assert png_rows(path) == (11, 9, bpp, pixels)
    facts = png_facts(path, step=1)
    assert (facts["width"], facts["height"]) == (11, 9)
    distinct = {row[i : i + bpp] for row in pixels for i in range(0, len(row), bpp)}
    assert facts["colours"] == len(distinct)


@pytest.mark.parametrize(
    ("pixel", "alpha", "dark"),
    [
        (b"\xff\xff\xff", False, 0.0),  # white
        (b"\x00\x00\x00", False, 1.0),  # black
        (b"\x40\x40\x40", False, 1.0),  # luminance 64
        (b"\x64\x64\x64", False, 0.0),  # luminance 100 is not below 100
        (b"\x00\x00\xff", False, 1.0),  # blue: 0.114 * 255 = 29
        (b"\x00\xff\x00", False, 0.0),  # green: 0.587 * 255 = 150
        (b"\x00\x00\x00\xff", True, 1.0),  # opaque black
        (b"\x00\x00\x00\x00", True, 0.0),  # transparent black, over white
    ],
)
@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4])
def test_a_uniform_image_is_one_colour_and_all_or_nothing_dark(
    tmp_path: Path, pixel: bytes, alpha: bool, dark: float, kind: int
) -> None:
    rows = [pixel * 30] * 20
    path = make_png(tmp_path / "flat.png", rows, 30, alpha=alpha, filters=[kind])
    assert png_facts(path) == {"width": 30, "height": 20, "colours": 1, "dark_fraction": dark}


def test_the_dark_fraction_counts_the_sampled_pixels(tmp_path: Path) -> None:
    """Left half black, right half white, sampling every pixel: half dark; every 7th of
    an 14-wide image (two samples a row, columns 0 and 7, one of each): half too."""
    rows = [b"\x00\x00\x00" * 7 + b"\xff\xff\xff" * 7] * 14
    path = make_png(tmp_path / "half.png", rows, 14, alpha=False, filters=[4])
    assert png_facts(path, step=1) == {
        "width": 14,
        "height": 14,
        "colours": 2,
        "dark_fraction": 0.5,
    }
    assert png_facts(path)["dark_fraction"] == 0.5


def test_a_png_it_cannot_read_is_a_value_error(tmp_path: Path) -> None:
    good = make_png(tmp_path / "g.png", [b"\x01\x02\x03"], 1, alpha=False, filters=[0])
    data = good.read_bytes()
    (tmp_path / "sig.png").write_bytes(b"GIF89a" + data[6:])
    (tmp_path / "crc.png").write_bytes(data[:20] + bytes([data[20] ^ 1]) + data[21:])
    grey = data[:8] + _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    (tmp_path / "grey.png").write_bytes(grey + data[33:])
    for name in ("sig", "crc", "grey"):
        with pytest.raises(ValueError):
            png_facts(tmp_path / f"{name}.png")


# --- a real browser -------------------------------------------------------------------

PAGE = b"""<!doctype html>
<html><head><title>kit</title></head>
<body style="background: #fff; color: #111; font: 32px sans-serif">
<h1 id="state">waiting</h1>
<p id="note">Some dark text, so a screenshot has something on it.</p>
<span id="later">soon empty</span>
<script>
  setTimeout(function () {
    document.getElementById("state").textContent = "changed";
    document.getElementById("later").textContent = "";
  }, 300);
</script>
</body></html>
"""


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, name="page-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _running(proc: psutil.Process) -> bool:
    """Alive: a zombie has exited (init reaps it a moment later), and ``is_running`` is
    False for a pid reused by another process since it was recorded."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _name(proc: psutil.Process) -> str:
    try:
        return str(proc.name())
    except psutil.NoSuchProcess:
        return "(gone)"


def _selenium_manager_must_not_run(*args: object) -> dict[str, str]:
    raise AssertionError(f"Selenium Manager ran: {args}")


@pytest.mark.system
@pytest.mark.timeout(120)
def test_a_real_browser_sees_the_page_change_and_leaves_nothing_behind(
    tmp_path: Path, page_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("selenium", reason="selenium is not installed")
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    monkeypatch.setattr(SeleniumManager, "binary_paths", _selenium_manager_must_not_run)
    with browser(tmp_path, width=800, height=600) as driver:
        recorded = browser_processes(driver)
        names = {_name(proc) for proc in recorded}
        assert "chromedriver" in names and "chromium" in names, names
        root = Path(driver.service.env["BROWSER_KIT_ROOT"])

        driver.get(page_url)
        assert driver.title == "kit"
        assert wait_text(driver, "#state", lambda t: t == "changed", 10, "the change") == "changed"
        assert wait_text(driver, "#later", lambda t: t == "", 10, "the text to go") == ""
        with pytest.raises(AssertionError, match=r"the impossible.*'changed'"):
            wait_text(driver, "#state", lambda t: t == "never", 0.5, "the impossible")
        with pytest.raises(AssertionError, match=r"the absent.*nothing matched '#absent'"):
            wait_text(driver, "#absent", bool, 0.5, "the absent")

        full = png_facts(screenshot(driver, tmp_path / "shots" / "page.png"))
        assert full["width"] == 800 and 0 < full["height"] <= 600, full
        assert full["colours"] > 1 and full["dark_fraction"] > 0, full
        heading = png_facts(element_screenshot(driver, "#state", tmp_path / "shots" / "h1.png"))
        assert heading["colours"] > 1 and heading["dark_fraction"] > 0, heading
        recorded += browser_processes(driver)  # renderers started for the page

    survivors = [(proc.pid, _name(proc)) for proc in recorded if _running(proc)]
    assert not survivors, f"browser processes outlived the with: {survivors}"
    assert not processes(root, None), "a process still carries the kit's mark"
    assert (root / "chromedriver.log").stat().st_size > 0


def test_chromium_paths_name_executables() -> None:
    paths = chromium_paths()
    if paths is None:
        pytest.skip("no chromium or chromedriver here")
    for path in paths:
        assert Path(path).is_file(), path


def _quit_fails() -> None:
    raise RuntimeError("quit failed")


@pytest.mark.system
@pytest.mark.timeout(120)
def test_when_quit_fails_the_processes_are_ended_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded: list[psutil.Process] = []
    with pytest.raises(RuntimeError, match="quit failed"), browser(tmp_path) as driver:
        driver.get("data:text/html,<p>quit will fail</p>")
        recorded += browser_processes(driver)
        monkeypatch.setattr(driver, "quit", _quit_fails)
    assert len(recorded) > 2
    survivors = [(proc.pid, _name(proc)) for proc in recorded if _running(proc)]
    assert not survivors, f"browser processes outlived a failed quit: {survivors}"
