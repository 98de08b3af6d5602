"""Agents for the system tests (loaded by the nodes' worker processes as
python:tests.system.agents:NAME)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def flaky(message: Any, history: Any) -> list[str]:
    """Crashes its worker on "crash ...", hangs on "hang ...", echoes anything else."""
    text = message.text
    if text.startswith("crash"):
        os._exit(3)
    if text.startswith("hang"):
        while True:
            time.sleep(60)
    return [f"echo: {text} (earlier turns: {len(history)})"]


def slow(message: Any, history: Any) -> list[str]:
    """Takes 3 s over a message that starts with "slow"; echoes at once otherwise."""
    if message.text.startswith("slow"):
        time.sleep(3)
    return [f"echo: {message.text} (earlier turns: {len(history)})"]


def stall(message: Any, history: Any) -> list[str]:
    """On "stall PATH": waits (two minutes at most) until the file PATH exists, then
    echoes; echoes anything else at once."""
    text = message.text
    if text.startswith("stall "):
        path = text.split(" ", 1)[1]
        deadline = time.monotonic() + 120
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.1)
    return [f"echo: {text} (earlier turns: {len(history)})"]


def env(message: Any, history: Any) -> list[str]:
    """The value of the environment variable the message names (``-`` if unset)."""
    return [f"{message.text}={os.environ.get(message.text, '-')}"]


def where(message: Any, history: Any) -> list[str]:
    """Echoes, naming the machine that ran it (its home's name, from the state
    directory's path: <mesh>/<name>/state) and baton's name of the topic."""
    return [_where(message, history, "-")]


def where_kept(message: Any, history: Any) -> list[str]:
    """``where``, and how many runs of the topic its state holds: a line per run in the
    state directory's topics/<topic>.log, appended here (the state must follow the
    topic wherever it runs)."""
    state = Path(os.environ.get("AGENT_STATE_DIR", "?/?"))
    log = state / "topics" / (message.topic.replace("/", "_") + ".log")
    log.parent.mkdir(exist_ok=True)
    seen = len(log.read_text().splitlines()) if log.exists() else 0
    with log.open("a") as fh:
        fh.write(f"{message.message_id}\n")
    return [_where(message, history, str(seen))]


def _where(message: Any, history: Any, seen: str) -> str:
    name = Path(os.environ.get("AGENT_STATE_DIR", "?/?")).parent.name
    return (
        f"echo: {message.text} on {name} in {message.topic} state {seen} "
        f"(earlier turns: {len(history)})"
    )
