"""Agents for the benchmarks, loaded by the agent's worker processes as
``python:tools.bench.agents:NAME`` (so this module imports nothing heavy)."""

from __future__ import annotations

import os
import time
from typing import Any


def stall(message: Any, history: Any) -> list[str]:
    """On "stall SECONDS": sleeps that long, then echoes; echoes anything else at once."""
    text = message.text
    if text.startswith("stall "):
        time.sleep(min(600.0, float(text.split(" ", 1)[1])))
    return [f"echo: {text}"]


def work(message: Any, history: Any) -> list[str]:
    """On "work MS ...": sleeps MS milliseconds (a model call's wait), then echoes; names
    the machine it ran on (its home's name, from the state directory's path) and
    baton's name of the topic."""
    text = message.text
    if text.startswith("work "):
        time.sleep(min(60.0, float(text.split(" ", 2)[1]) / 1000))
    where = os.path.basename(os.path.dirname(os.environ.get("AGENT_STATE_DIR", "?/?")))
    return [f"echo: {text} on {where} in {message.topic}"]
