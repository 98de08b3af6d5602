"""What an operator sees, on real machines: the status page in a real browser (Debian's
headless Chromium through its chromedriver) follows a failover and a handoff, and says
what `baton status --json` says; /metrics parses with prometheus_client's own parser
and counts the failover and the handoff; `baton status --watch` follows the node until
Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import Machine, Mesh
from baton.node.client import NodeClient
from tests.system.browser import (
    browser,
    element_screenshot,
    ocr,
    png_facts,
    read,
    screenshot,
    wait_text,
)
from tests.system.chat_kit import TOPICS, answered, holder, post, start_mesh
from tests.waits import wait_for

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def samples(m: Machine) -> dict[str, float]:
    """The node's /metrics, read back by prometheus_client: each sample by its name and
    labels (``name{a="b"}``)."""
    with _OPENER.open(NodeClient(m.home).info["http"] + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def seen_header(driver: Any, path: Path) -> str:
    """The page's header as a screenshot (not blank), read back by OCR. The page is held
    still meanwhile (it replaces its body every 2 s, and a capture in the middle of a
    swap may catch half a paint)."""
    read(driver, "document.body.dataset.hold = '1'")
    try:
        facts = png_facts(element_screenshot(driver, "header", path))
    finally:
        read(driver, "delete document.body.dataset.hold")
    assert facts["colours"] > 2 and facts["dark_fraction"] > 0, facts
    return ocr(path)


def nickname_of(status: dict[str, object], machine_id: object) -> str:
    if machine_id == status["machine_id"]:
        return str(status["nickname"])
    peers = status["peers"]
    assert isinstance(peers, list)
    return next(str(p["nickname"]) for p in peers if p["machine_id"] == machine_id)


def said_holder(watcher: Machine, cli: bool = False) -> tuple[str, int]:
    """The holder's nickname and the epoch as the watcher's status says: `baton status
    --json` itself with ``cli``, else the same call from this process (to poll)."""
    view = watcher.json("status") if cli else watcher.status()
    return nickname_of(view, view["holder"]), int(view["epoch"])


@pytest.mark.timeout(300)
def test_the_page_follows_a_failover_and_a_handoff(
    make_mesh: Callable[..., Mesh], tmp_path: Path
) -> None:
    with ChatServer(tmp_path / "chat.sqlite", mode="telegram") as chat:
        mesh = start_mesh(make_mesh, chat, names=("alpha", "bravo", "charlie"))
        first = holder(mesh)
        assert first is not None
        watcher = next(m for m in mesh.machines if m is not first)
        posted = {post(chat, t, f"before {t}") for t in TOPICS}
        wait_for(lambda: answered(chat, posted), 60, "the first replies")

        metrics = samples(first)
        epoch = int(first.status()["epoch"])
        assert metrics["baton_awake"] == 1 and metrics["baton_lease_epoch"] == epoch
        assert metrics['baton_replies_total{outcome="accepted"}'] >= len(TOPICS)
        assert samples(watcher)["baton_awake"] == 0

        url = watcher.json("ui")["url"]
        with browser(tmp_path, scale=2) as driver:
            driver.get(url)  # the one-time code, traded for the session cookie
            name, _ = said_holder(watcher, cli=True)
            assert name == first.name
            wait_text(driver, "#holder", lambda t: t == first.name, 30, "the first holder")
            assert read(driver, "document.getElementById('conn').textContent") == "live"
            ids = "[...document.querySelectorAll('#mesh tbody tr')].map(r => r.dataset.machineId)"
            assert set(read(driver, ids)) == {m.card()["machine_id"] for m in mesh.machines}
            shot = png_facts(screenshot(driver, tmp_path / "before.png"))
            assert shot["width"] > 600 and shot["colours"] > 5 and shot["dark_fraction"] > 0
            assert f"holder {first.name}" in seen_header(driver, tmp_path / "before-header.png")

            others = [m for m in mesh.machines if m is not first]
            wait_for(
                lambda: any(m.status()["may_take_over"] for m in others),
                60,
                "a standby in sync, to take over",
            )
            first.signal_node(signal.SIGKILL)  # its supervisor restarts it, as a standby
            wait_for(lambda: said_holder(watcher)[1] > epoch, 60, "the failover", 0.2)
            name, epoch = said_holder(watcher, cli=True)
            wait_text(driver, "#epoch", lambda t: t == str(epoch), 30, "the new epoch")
            wait_text(driver, "#holder", lambda t: t == name, 30, "the new holder")
            timeline = read(driver, "document.getElementById('timeline').innerText")
            assert f"epoch {epoch}:" in timeline
            header = seen_header(driver, tmp_path / "failover.png")
            assert f"holder {name}, epoch {epoch}" in header, header
            new = next(m for m in mesh.machines if m.name == name)
            wait_for(lambda: samples(new)["baton_awake"] == 1, 30, "the new holder's metrics", 0.2)
            # a standby in sync took over (the victim, restarted, could only if the set
            # had lost every standby after the look above: then it is no failover)
            if new is not first:
                assert samples(new)["baton_failover_duration_seconds_count"] == 1
                assert samples(new)["baton_lease_failovers_total"] == 1

            # the handoff: to the machine that is neither the holder nor, if it can be
            # helped, the watcher
            to = next(m for m in mesh.machines if m.name != name and m is not watcher)
            wait_for(lambda: to.status()["may_take_over"], 60, f"{to.name} in sync")
            done = to.json("wakeup")
            assert done["ok"], done
            wait_text(driver, "#holder", lambda t: t == to.name, 30, "the handoff's holder")
            assert said_holder(watcher, cli=True) == (to.name, done["epoch"])
            wait_text(driver, "#epoch", lambda t: t == str(done["epoch"]), 30, "its epoch")
            png = screenshot(driver, tmp_path / "handoff.png")
            assert png_facts(png)["colours"] > 5
            header = seen_header(driver, tmp_path / "handoff-header.png")
            assert f"holder {to.name}, epoch {done['epoch']}" in header, header
            assert samples(to)["baton_handoff_duration_seconds_count"] == 1
            assert samples(to)["baton_awake"] == 1

            # the pool on: the page (on a standby, which asks the holder) lists the topics
            # and the machine each runs on
            assert to.json("pool", "enable")["enabled"] is True
            wait_for(lambda: watcher.status()["pool"]["enabled"], 30, "the watcher's pool")
            later = {post(chat, t, f"after {t}") for t in TOPICS}
            wait_for(lambda: answered(chat, later), 60, "replies after the handoff")
            names = {m.name for m in mesh.machines}

            def topic_rows() -> list[list[str]]:
                cells = "[...r.cells].map(c => c.innerText.trim())"
                rows = f"[...document.querySelectorAll('#topics tbody tr')].map(r => {cells})"
                return list(read(driver, rows))

            wait_for(lambda: len(topic_rows()) >= len(TOPICS), 60, "the pool's topics")
            for row in topic_rows():
                assert row[1].split()[0] in names and row[2].split()[0] in {"pinned", "placed"}
            wait_text(
                driver,
                "#answered",
                lambda t: t.isdigit() and int(t) >= 2 * len(TOPICS),
                30,
                "the answered count",
            )


@pytest.mark.timeout(180)
def test_status_watch_and_ui_follow_a_node_on_a_port_picked_at_start(tmp_path: Path) -> None:
    """`--http 127.0.0.1:0`: the node picks its port at each start. `baton ui` names the
    port in use; `status --watch` goes on through a restart onto another port, and ends
    with 0 on Ctrl-C."""
    m = Machine("solo", tmp_path / "solo")
    try:
        m.json("init", "--name", "solo", "--http", "127.0.0.1:0", "--wire", "127.0.0.1:0")
        first = m.up()
        url = m.json("ui")["url"]
        assert url.startswith(first["http"] + "/login?code=") and ":0/" not in url
        jar = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor()
        )
        with jar.open(url, timeout=10) as page:  # the code, traded for the cookie, then /
            html = page.read().decode()
            assert page.url == first["http"] + "/" and 'id="me">solo<' in html
        cmd = [m.python, "-P", "-m", "baton", "status", "--watch", "--every", "0.2", "--json"]
        proc = subprocess.Popen(
            [*cmd, "--home", str(m.home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            views = [json.loads(proc.stdout.readline()) for _ in range(3)]
            assert {v["pid"] for v in views} == {first["node_pid"]}
            assert views[2]["uptime_s"] > views[0]["uptime_s"]
            m.baton("down")
            again = m.up()
            assert again["http"] != first["http"]  # another port, picked at start
            for _ in range(2000):  # bounded: a look every 0.2 s, errors while it was down
                view = json.loads(proc.stdout.readline())
                if view.get("pid") == again["node_pid"]:
                    break
            else:
                raise AssertionError("the watch never found the node back on its new port")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        human = m.baton("status", env_extra={"NO_COLOR": "1"}).stdout
        assert human.splitlines()[0].startswith("solo (") and "\x1b[" not in human
    finally:
        m.stop()
