"""Agents for the benchmarks, loaded by the agent's worker processes as
``python:tools.bench.agents:NAME`` (so this module imports nothing heavy)."""

from __future__ import annotations

import time
from typing import Any


def stall(message: Any, history: Any) -> list[str]:
    """On "stall SECONDS": sleeps that long, then echoes; echoes anything else at once."""
    text = message.text
    if text.startswith("stall "):
        time.sleep(min(600.0, float(text.split(" ", 1)[1])))
    return [f"echo: {text}"]
