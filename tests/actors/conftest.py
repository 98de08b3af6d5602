"""Fixtures of the actor tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from baton.channels.memory import MemoryChannel
from tests.actors.machines import Machine, make_pair


@pytest.fixture
def pair() -> Iterator[tuple[MemoryChannel, Machine, Machine]]:
    channel, a, b = make_pair()
    try:
        yield channel, a, b
    finally:
        a.stop()
        b.stop()
