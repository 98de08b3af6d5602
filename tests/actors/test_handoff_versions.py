"""A handoff only onto a machine that speaks the mesh's protocol (issue 21): the holder
refuses a wakeup from a target whose announcement says it cannot speak the protocol
the mesh runs at, and a target that knows it cannot refuses its own wakeup at once; the
holder stays awake and answers, and the refusal is final (a wakeup does not retry it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from baton.actors.messages import MembersChanged
from baton.channels.memory import MemoryChannel
from baton.core.handoff import may_retry
from baton.core.settings import Settings
from baton.core.versions import Versions
from baton.wire.envelope import Envelope
from tests.actors.machines import Machine
from tests.actors.test_handoff_actor import still_awake

pytestmark = pytest.mark.timeout(90)

FAST = Settings(agent_retries=1, live_tail_flush_ms=100, handoff_ack_timeout_ms=1500)
NEW = Versions("0.3.0", (2, 3))  # a build that no longer speaks protocol 1


@pytest.fixture
def old_and_new() -> Iterator[tuple[MemoryChannel, Machine, Machine]]:
    """``a`` runs this build (protocol 1 alone), ``b`` NEW: the mesh runs at 1."""
    channel = MemoryChannel("memory")
    router: dict[str, Machine] = {}
    a = Machine(10, channel, router, settings=FAST)
    b = Machine(20, channel, router, settings=FAST, versions=NEW)
    router.update({a.id: a, b.id: b})
    a.peers(b)
    b.peers(a)
    try:
        yield channel, a, b
    finally:
        a.stop()
        b.stop()


def test_a_target_that_cannot_speak_the_mesh_protocol_refuses_its_own_wakeup(
    old_and_new: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, b = old_and_new
    a.hold(1, in_sync=(b.id,))
    result = b.wakeup()
    assert not result["ok"] and result["outcome"] == "refused", result
    assert "cannot speak protocol 1" in result["detail"] and "2-3" in result["detail"]
    assert not may_retry(result["outcome"], result["detail"])
    assert a.counters.get("handoff.holder.cannot_speak") == 0  # a was never asked
    still_awake(channel, a, "a refused wakeup")


def test_the_holder_refuses_a_target_its_announcement_says_cannot_speak_it(
    old_and_new: tuple[MemoryChannel, Machine, Machine],
) -> None:
    """``b`` thinks it may (its view of ``a`` says ``a`` runs NEW too: stale, say);
    ``a`` knows what it runs itself."""
    channel, a, b = old_and_new
    stale = replace(a.entry, announcement=replace(a.entry.announcement, versions=NEW))
    b.handoff.ask(MembersChanged((stale,)))
    a.hold(1, in_sync=(b.id,))
    result = b.wakeup()
    assert not result["ok"] and result["outcome"] == "refused", result
    assert "cannot speak protocol 1" in result["detail"]
    assert not may_retry(result["outcome"], result["detail"])
    assert a.counters.get("handoff.holder.cannot_speak") == 1
    still_awake(channel, a, "the holder refused")


def test_a_target_the_members_say_cannot_speak_it_by_the_yield_does_not_get_the_lease(
    old_and_new: tuple[MemoryChannel, Machine, Machine],
) -> None:
    """Checked again before the holder yields: the members changed during the handoff
    (``b``'s announcement now says NEW) and the lease stays."""
    channel, a, b = old_and_new
    c = Machine(30, channel, a.router, settings=FAST)  # this build: it may take a handoff
    a.router[c.id] = c
    try:
        a.peers(b, c)
        c.peers(a, b)
        a.hold(1, in_sync=(c.id,))
        later = replace(c.entry, announcement=replace(c.entry.announcement, versions=NEW))

        def change_on_begin(env: Envelope) -> list[Envelope]:
            if env.type == "handoff_begin":  # while c catches up, its entry changes
                a.handoff.tell(MembersChanged((b.entry, later)))
            return [env]

        a.link = change_on_begin
        result = c.wakeup()
        assert not result["ok"], result
        assert "cannot speak protocol 1" in result["detail"], result
        assert a.counters.get("handoff.holder.cannot_speak") == 1
        still_awake(channel, a, "the yield refused")
    finally:
        c.stop()
