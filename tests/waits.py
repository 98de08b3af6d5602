"""The tests' one way to wait: poll a condition until it holds or a deadline passes.

No test sleeps for a fixed time to let something happen; it waits for the thing. The
production kit (``baton.demo.devmesh``) has its own for the demo and the campaign; a
test of an actor or a parser should not import the mesh kit to wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """``predicate``'s first truthy answer; TimeoutError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not (answer := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return answer


def holds_for(predicate: Callable[[], object], seconds: float, what: str) -> None:
    """A bounded look at a thing that must not happen: ``predicate`` holds at every look
    for ``seconds``; AssertionError naming ``what`` (what happened) at the first that
    does not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), what
        time.sleep(0.2)
