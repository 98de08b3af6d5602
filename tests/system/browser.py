"""A real headless Chromium for system tests, driven through Selenium, that never leaves a
process behind and never reaches the network.

    with browser(tmp_path) as driver:
        driver.get(f"http://127.0.0.1:{port}/")
        wait_text(driver, "#state", lambda t: t == "awake", 10, "the page to show awake")
        facts = png_facts(screenshot(driver, tmp_path / "page.png"))
        assert facts["colours"] > 1 and facts["dark_fraction"] > 0  # not a blank page

What it uses: Debian's ``chromium`` and ``chromium-driver`` (``chromium_paths``); a test
on a machine without them, or without selenium, is skipped with the reason.

Selenium Manager (the helper that looks up and downloads drivers and browsers) never
runs: selenium 4.x calls it only from ``DriverFinder._binary_paths`` and only when the
``Service`` has no driver path, and ``browser`` always gives one. The ``browser_path`` it
would have filled in stays empty, so ``binary_location`` is ours as well. In case a later
selenium calls it anyway, it is started (only while the driver is built) with
``SE_OFFLINE``, ``SE_AVOID_BROWSER_DOWNLOAD`` and ``SE_AVOID_STATS`` set. The unit test of
this kit replaces ``SeleniumManager.binary_paths`` with a failure to prove it.

Chromium itself: no proxy, no background networking, component updates, extensions,
sync, first-run or default-browser check, and a host resolver that resolves nothing but
loopback (``LOOPBACK``: ``localhost``, ``127.*``, ``::1``) and the ``hosts`` a test names,
so a page or a Chromium service cannot phone home: any other name, and even any other IP
literal, is ``net::ERR_NAME_NOT_RESOLVED``. Its HOME, XDG dirs and profile are under
``tmp_path``, so nothing is written to the real home; its TMPDIR is a short-named
directory of the system's, removed on the way out (a tmp_path is too long a path for the
Unix socket Chromium keeps there).

Processes: ``browser`` quits the driver in a ``finally`` and then ends, by pid, whatever
of its own is still running: chromedriver, every descendant of it, and every process
that carries the kit's mark (``BROWSER_KIT_ROOT=<its directory>`` in its environment, or
that directory in its command line). The mark matters: Chromium's crash handler
(``chrome_crashpad_handler``) detaches itself to init at start, outside chromedriver's
tree, even with ``--disable-crash-reporter``. A process that is dead but not yet reaped
(a zombie, the orphans init reaps a moment later) counts as gone.

In new headless mode ``--window-size`` sizes the window, not the page: the viewport (and
so ``screenshot``) is the width by somewhat less than the height (1280x857 for the
default 1280x1000 with Chromium 156).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import accumulate
from operator import add
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypedDict

import psutil
import pytest

if TYPE_CHECKING:
    from selenium.webdriver import Chrome
    from selenium.webdriver.chrome.service import Service

INSTALL_HINT = "apt-get install chromium chromium-driver"
PAGE_LOAD_TIMEOUT = 30.0  # seconds; driver.get and a script each fail after this
SCRIPT_TIMEOUT = 30.0
MARK = "BROWSER_KIT_ROOT"  # in the environment of every process a browser() starts

# the real binary before Debian's launcher script (/usr/bin/chromium), which sources
# /etc/chromium.d: it turns remote extensions on, adds Google API keys, and its /dev/shm
# check breaks when findmnt prints two lines
BROWSER_CANDIDATES = (
    "/usr/lib/chromium/chromium",
    "chromium",
    "chromium-browser",
    "/usr/bin/chromium",
)
DRIVER_CANDIDATES = ("chromedriver", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")

CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",  # as root: "Running as root without --no-sandbox is not supported"
    "--disable-dev-shm-usage",  # shared memory in TMPDIR: a container's /dev/shm is small
    "--disable-gpu",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--metrics-recording-only",  # metrics kept in the profile, never uploaded
    "--no-default-browser-check",
    "--no-first-run",
    "--no-pings",
    "--password-store=basic",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater",
)

# host patterns the browser may reach (``*`` wildcards; an IP literal counts as a host)
LOOPBACK = ("localhost", "127.*", "::1")


def host_resolver_rules(hosts: Sequence[str] = ()) -> str:
    """Chromium's ``--host-resolver-rules`` value resolving only loopback and ``hosts``."""
    return ", ".join(["MAP * ~NOTFOUND", *(f"EXCLUDE {h}" for h in (*LOOPBACK, *hosts))])


# variables chromedriver and Chromium must not inherit: proxies (Chromium takes
# --no-proxy-server, but nothing should guess), a display or a session bus to talk to.
# (SE_CHROMEDRIVER, if set, still names the driver: selenium reads it from os.environ.)
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")
DROPPED = (
    *PROXY_VARIABLES,
    *(name.upper() for name in PROXY_VARIABLES),
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "DBUS_SESSION_BUS_ADDRESS",
)
SELENIUM_MANAGER_OFFLINE = {
    "SE_OFFLINE": "true",
    "SE_AVOID_BROWSER_DOWNLOAD": "true",
    "SE_AVOID_STATS": "true",
}


def _executable(candidate: str) -> str | None:
    path = candidate if os.sep in candidate else shutil.which(candidate)
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    return None


def chromium_paths() -> tuple[str, str] | None:
    """(chromium binary, chromedriver), or None when either is missing."""
    found = [
        next((p for c in candidates if (p := _executable(c))), None)
        for candidates in (BROWSER_CANDIDATES, DRIVER_CANDIDATES)
    ]
    browser_path, driver_path = found
    if browser_path is None or driver_path is None:
        return None
    return browser_path, driver_path


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ for a while; only those keys are put back after."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _short_temporary_directory() -> Path:
    """A new directory for the browser's TMPDIR. Not under ``tmp_path``: Chromium puts
    its singleton's Unix socket there, and dies ("Socket path too long") when the path is
    longer than a socket address holds (108 bytes), as a pytest tmp_path soon is."""
    base = tempfile.gettempdir()
    if len(base) > 40 and os.path.isdir("/tmp"):
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="browser-kit-", dir=base))


def _environment(root: Path, temporary: Path) -> dict[str, str]:
    """chromedriver's environment, which Chromium inherits: its own home and XDG dirs
    under ``root``, ``temporary`` as TMPDIR, and the kit's mark."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    dirs = {
        "HOME": root / "home",
        "XDG_CONFIG_HOME": root / "home" / ".config",
        "XDG_CACHE_HOME": root / "home" / ".cache",
        "XDG_DATA_HOME": root / "home" / ".local" / "share",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["TMPDIR"] = str(temporary)
    env[MARK] = str(root)
    return env


def _marked(root: Path) -> list[psutil.Process]:
    """Live processes carrying ``root`` as the mark in their environment or anywhere in
    their command line (Chromium starts its zygotes with an environment of its own, but
    they and their children name the profile directory)."""
    text = str(root)
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        if proc.pid == os.getpid():
            continue
        env = proc.info.get("environ") or {}
        cmdline = proc.info.get("cmdline") or []
        if env.get(MARK) == text or any(
            arg.endswith(text) or text + os.sep in arg for arg in cmdline
        ):
            found.append(proc)
    return found


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def processes(root: Path, driver_pid: int | None) -> list[psutil.Process]:
    """Every live process of the browser in ``root``: chromedriver (``driver_pid``), its
    descendants, and whatever carries the mark of ``root``."""
    found: dict[int, psutil.Process] = {}
    if driver_pid is not None:
        with contextlib.suppress(psutil.Error):
            top = psutil.Process(driver_pid)
            found[top.pid] = top
            found.update((child.pid, child) for child in top.children(recursive=True))
    found.update((proc.pid, proc) for proc in _marked(root))
    return [proc for proc in found.values() if _alive(proc)]


def browser_processes(driver: Chrome) -> list[psutil.Process]:
    """The live processes of a browser() that is running: for a test that checks none
    survives it (``psutil.Process`` objects know a reused pid from the one recorded)."""
    return processes(Path(driver.service.env[MARK]), driver.service.process.pid)


def _end(root: Path, driver_pid: int | None) -> None:
    """SIGTERM, then SIGKILL, to the browser's processes; AssertionError if one lives."""
    left = processes(root, driver_pid)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, left = psutil.wait_procs(left, timeout=5)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=5)
    survivors = [proc.pid for proc in processes(root, driver_pid)]
    assert not survivors, f"browser processes survived SIGKILL: {survivors}"


def _missing(reason: str) -> NoReturn:
    """Skip, but fail where the browser must run (.ci/run sets NEED_BROWSER_TESTS): CI
    shows the browser tests ran, never that they skipped."""
    if os.environ.get("NEED_BROWSER_TESTS"):
        pytest.fail(f"NEED_BROWSER_TESTS is set, and {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def browser(
    tmp_path: Path,
    *,
    width: int = 1280,
    height: int = 1000,
    hosts: Sequence[str] = (),
    scale: int = 1,
) -> Iterator[Chrome]:
    """A headless Chromium under chromedriver, its files in a new directory of
    ``tmp_path`` (profile, home, chromedriver.log); quit and every process of it ended
    on the way out. It reaches loopback only, and ``hosts`` (patterns such as
    ``"10.0.0.*"``) besides. ``scale`` is its device pixel ratio: 2 draws text at twice
    the pixels, which OCR reads surely. Skips the test when Chromium, chromedriver or
    selenium is missing."""
    paths = chromium_paths()
    if paths is None:
        _missing(f"no chromium or no chromedriver on this machine: {INSTALL_HINT}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing(f"selenium is not installed (pip install selenium); and {INSTALL_HINT}")
    browser_path, driver_path = paths
    root = Path(tempfile.mkdtemp(prefix="browser-", dir=tmp_path))
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for arg in (
        *CHROMIUM_ARGS,
        f"--user-data-dir={root / 'profile'}",
        f"--window-size={width},{height}",
        f"--force-device-scale-factor={scale}",
        f"--host-resolver-rules={host_resolver_rules(hosts)}",
    ):
        options.add_argument(arg)
    with warnings.catch_warnings():  # deprecated for a ClientConfig Chrome() cannot take
        warnings.simplefilter("ignore", DeprecationWarning)
        options.ignore_local_proxy_environment_variables()  # selenium -> chromedriver
    temporary = _short_temporary_directory()
    driver: Chrome | None = None
    service = None
    try:
        service = Service(
            executable_path=driver_path,
            log_output=str(root / "chromedriver.log"),
            env=_environment(root, temporary),
        )
        with _environ(SELENIUM_MANAGER_OFFLINE):
            driver = webdriver.Chrome(options=options, service=service)
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        driver.set_script_timeout(SCRIPT_TIMEOUT)
        yield driver
    finally:
        try:
            if driver is not None:
                driver.quit()
        finally:
            try:
                _end(root, _unreaped_pid(service))
            finally:
                if service is not None:
                    with contextlib.suppress(Exception):
                        service.stop()  # closes chromedriver.log if quit did not
                shutil.rmtree(temporary, ignore_errors=True)


def _unreaped_pid(service: Service | None) -> int | None:
    """chromedriver's pid while it is still ours: not yet reaped, so not yet reusable by
    another process (a zombie keeps its pid). None once selenium has waited for it."""
    process = getattr(service, "process", None)
    if process is None or process.poll() is not None:
        return None
    return int(process.pid)


def wait_text(
    driver: Chrome, css: str, predicate: Callable[[str], bool], timeout: float, what: str
) -> str:
    """The text of the element ``css`` selects once ``predicate`` accepts it, polled until
    ``timeout`` seconds pass; then AssertionError naming ``what`` and the last text seen."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    seen = f"(nothing matched {css!r})"

    def accepted(d: Chrome) -> tuple[str] | Literal[False]:  # "" may be the text awaited
        nonlocal seen
        text: str = d.find_element(By.CSS_SELECTOR, css).text
        seen = text
        return (text,) if predicate(text) else False

    wait = WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )
    try:
        (text,) = wait.until(accepted)
    except TimeoutException:
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what}; last text of {css!r}: {seen!r}"
        ) from None
    return text


def screenshot(driver: Chrome, path: Path) -> Path:
    """The viewport as a PNG at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"the browser wrote no screenshot to {path}")
    return path


def element_screenshot(driver: Chrome, css: str, path: Path, tries: int = 10) -> Path:
    """The first element ``css`` selects, as a PNG at ``path``. A page that replaces its
    content (the status page does every 2 s) may make the element stale between finding
    and shooting it: it is found again, ``tries`` times at most."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(tries):
        try:
            shot = driver.find_element(By.CSS_SELECTOR, css).screenshot(str(path))
        except StaleElementReferenceException:
            continue
        if not shot:
            raise AssertionError(f"the browser wrote no screenshot of {css!r} to {path}")
        return path
    raise AssertionError(f"{css!r} went stale {tries} times in a row")


def ocr(path: Path) -> str:
    """The text tesseract reads in the image at ``path``, its whitespace made single
    spaces: a test reads a screenshot as a person would. Without tesseract, as without
    a browser: skipped, but failed where NEED_BROWSER_TESTS is set."""
    import subprocess

    tesseract = shutil.which("tesseract")
    if tesseract is None:
        _missing("no tesseract to read screenshots: apt-get install tesseract-ocr")
    out = subprocess.run(
        [tesseract, str(path), "stdout"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return " ".join(out.split())


def read(driver: Chrome, script: str) -> Any:
    """What ``script`` (a JavaScript expression) says of the page, in one step of the
    page's own thread: no element found here can go stale before it is read."""
    return driver.execute_script(f"return ({script});")


# --- PNG, with the standard library only ------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BYTE = (255).__and__


class PngFacts(TypedDict):
    width: int
    height: int
    colours: int  # distinct colours among the sampled pixels
    dark_fraction: float  # of the sampled pixels, those with luminance < DARK


DARK = 100


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG: bad signature")
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if len(body) != length or zlib.crc32(kind + body) != crc:
            raise ValueError(f"PNG chunk {kind!r} at byte {pos} is truncated or corrupt")
        yield kind, body
        if kind == b"IEND":
            return
        pos += 12 + length
    raise ValueError("PNG ends without IEND")


def _sub(line: bytes, bpp: int) -> bytes:
    """Filter 1: each byte adds the byte a pixel to its left; per channel that is a
    running sum (mod 256)."""
    out = bytearray(len(line))
    for channel in range(bpp):
        out[channel::bpp] = bytes(map(_BYTE, accumulate(line[channel::bpp])))
    return bytes(out)


def _up(line: bytes, prior: bytes) -> bytes:
    """Filter 2: each byte adds the byte above it."""
    return bytes(map(_BYTE, map(add, line, prior)))


def _average(line: bytes, prior: bytes, bpp: int) -> bytes:
    """Filter 3: each byte adds the floor of the mean of the left and upper bytes."""
    out = bytearray(line)
    for i in range(len(out)):
        left = out[i - bpp] if i >= bpp else 0
        out[i] = (out[i] + ((left + prior[i]) >> 1)) & 255
    return bytes(out)


def _paeth(line: bytes, prior: bytes, bpp: int) -> bytes:
    """Filter 4: each byte adds whichever of left, up and upper-left is nearest to
    left + up - upper-left (ties in that order)."""
    out = bytearray(line)
    for i in range(len(out)):
        a = out[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        if pa <= pb and pa <= pc:
            predicted = a
        elif pb <= pc:
            predicted = b
        else:
            predicted = c
        out[i] = (out[i] + predicted) & 255
    return bytes(out)


def png_rows(path: Path) -> tuple[int, int, int, list[bytes]]:
    """(width, height, bytes per pixel, unfiltered rows) of an 8-bit RGB (colour type 2)
    or RGBA (6), non-interlaced PNG; ValueError for anything else."""
    header = b""
    idat = []
    for kind, body in _chunks(path.read_bytes()):
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
    if len(header) != 13:
        raise ValueError("PNG without a valid IHDR")
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour_type not in (2, 6) or interlace != 0:
        raise ValueError(
            f"only 8-bit RGB/RGBA non-interlaced PNGs: depth {depth}, colour type "
            f"{colour_type}, interlace {interlace}"
        )
    bpp = 3 if colour_type == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    if len(raw) != height * (stride + 1):
        raise ValueError(f"PNG image data is {len(raw)} bytes, not {height * (stride + 1)}")
    rows: list[bytes] = []
    prior = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], raw[start + 1 : start + 1 + stride]
        if kind == 0:
            row = line
        elif kind == 1:
            row = _sub(line, bpp)
        elif kind == 2:
            row = _up(line, prior)
        elif kind == 3:
            row = _average(line, prior, bpp)
        elif kind == 4:
            row = _paeth(line, prior, bpp)
        else:
            raise ValueError(f"PNG row {y} has unknown filter type {kind}")
        rows.append(row)
        prior = row
    return width, height, bpp, rows


def png_facts(path: Path, *, step: int = 7) -> PngFacts:
    """Width, height, and, over every ``step``-th pixel (in reading order), the number of
    distinct colours and the fraction of dark pixels: luminance (0.299 R + 0.587 G +
    0.114 B, an RGBA pixel over white) below DARK. A blank page has one colour and no
    dark pixel; text makes dark pixels and, anti-aliased, many colours."""
    width, height, bpp, rows = png_rows(path)
    colours: set[bytes] = set()
    dark = sampled = 0
    for y, row in enumerate(rows):
        for x in range((-y * width) % step, width, step):
            pixel = row[x * bpp : (x + 1) * bpp]
            colours.add(pixel)
            luminance = 0.299 * pixel[0] + 0.587 * pixel[1] + 0.114 * pixel[2]
            if bpp == 4:
                luminance = 255 - pixel[3] / 255 * (255 - luminance)
            sampled += 1
            dark += luminance < DARK
    return {
        "width": width,
        "height": height,
        "colours": len(colours),
        "dark_fraction": dark / sampled if sampled else 0.0,
    }
