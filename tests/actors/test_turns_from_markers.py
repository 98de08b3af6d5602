"""Turns from the holder's markers (loose turns): a takeover adds the turns whose
replies the user saw although the live tail never brought them; never before a turn
the transcript holds; only on a standby; redacted; bounded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import nacl.public
import pytest

from baton.actors.delivery_messages import GetDelivery
from baton.actors.loose_turns import LooseTurn, LooseTurns, place
from baton.actors.tail_messages import GetTail, TurnSeen
from baton.actors.tail_replay import replay
from baton.adapters.metrics import Counters
from baton.channels.memory import MemoryChannel
from baton.core.ledger import LedgerEntry, LedgerState, ReplyRecord, reply_key
from baton.core.live_tail import compile_redactions
from baton.core.settings import Settings
from baton.stores.tail_memory import MemoryLiveTailBuffer
from baton.stores.transcript_memory import MemoryTranscriptStore
from baton.wire.envelope import Envelope
from tests.actors.machines import SETTINGS, Machine, all_answered, bot_texts, post_many
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(60)

# a live tail that never flushes again within a test: every later turn is loose
SLOW = Settings(agent_retries=1, lease_ttl_ms=600_000, live_tail_flush_ms=60_000)


@contextmanager
def machines(settings: Settings = SETTINGS) -> Iterator[tuple[MemoryChannel, Machine, Machine]]:
    channel = MemoryChannel("memory")
    router: dict[str, Machine] = {}
    started: list[Machine] = []
    try:
        for seed in (10, 20):
            started.append(Machine(seed, channel, router, settings=settings))
        a, b = started
        router.update({a.id: a, b.id: b})
        a.peers(b)
        b.peers(a)
        yield channel, a, b
    finally:
        for m in started:
            m.stop()


def tail_view(m: Machine) -> dict[str, Any]:
    view: dict[str, Any] = m.tail.ask(GetTail(), timeout=5)
    return view


def turns_of(m: Machine) -> dict[str, list[tuple[str, str, tuple[str, ...]]]]:
    return {
        topic: [(t.ledger_key, t.text, t.replies) for t in m.transcripts.turns(topic, 0, 10_000)]
        for topic in m.transcripts.last_seqs()
    }


def no_tail(env: Envelope) -> list[Envelope]:
    return [] if env.type == "tail" else [env]


@pytest.mark.parametrize("fault", ["flushes_dropped", "flushes_slow"])
def test_a_takeover_adds_every_answered_turn_the_tail_did_not_bring(fault: str) -> None:
    with machines(SLOW if fault == "flushes_slow" else SETTINGS) as (channel, a, b):
        a.hold(1)
        first = post_many(channel, 6)
        wait_for(lambda: all_answered(channel, first), 20, "a answers")
        streamed = 0
        if fault == "flushes_dropped":
            wait_for(lambda: sum(h for h, _ in b.buffer.heads().values()) == 6, 10, "the tail")
            wait_for(lambda: tail_view(b)["loose"] == 0, 10, "the chain took over the markers")
            streamed = 6
            a.link = no_tail  # from now on the holder's flushes are lost
        second = post_many(channel, 9, start=6)
        wait_for(lambda: all_answered(channel, second), 20, "a answers more")
        loose = 15 - streamed
        wait_for(lambda: tail_view(b)["loose"] == loose, 10, "b knows them from the markers")
        assert sum(h for h, _ in b.buffer.heads().values()) == streamed  # the chain lacks them
        held = turns_of(a)

        a.hold(None)  # the holder is gone
        wait_for(lambda: a.ref.ask(GetDelivery(), timeout=5)["term"] is None, 10, "a stops")
        b.hold(2)
        third = post_many(channel, 3, start=15)
        wait_for(lambda: all_answered(channel, third), 20, "b answers")
        wait_for(lambda: sum(b.transcripts.last_seqs().values()) == 18, 10, "b's turns")

        for n in range(3):  # no gap: each topic's 6th message saw 5 earlier turns
            assert bot_texts(channel, f"t{n}")[-1] == f"echo: m{15 + n} (earlier turns: 5)"
        mine = turns_of(b)
        assert {t: turns[:5] for t, turns in mine.items()} == held  # every turn, in order
        for turns in mine.values():
            texts = [text for _, text, _ in turns]
            assert texts == sorted(texts, key=lambda x: int(x[1:])) and len(texts) == 6
        assert b.counters.get("tail.loose_added") == loose
        assert b.counters.get("tail.loose_stale") == 0
        assert tail_view(b)["loose"] == 0  # forgotten after the replay


def entry(key: str, message_id: int, text: str, topic: str = "1/1") -> LedgerEntry:
    reply = ReplyRecord(0, f"re: {text}", reply_key(key, 0), committed=True, epoch=1)
    return LedgerEntry(
        key=key,
        channel="memory",
        topic=topic,
        chat_id=1,
        thread_id=1,
        message_id=message_id,
        update_id=None,
        text=text,
        sender="user",
        state=LedgerState.ACKED,
        replies=(reply,),
        received_ms=1000.0 + message_id,
    )


def test_a_loose_turn_older_than_the_last_turn_is_skipped_and_counted() -> None:
    with machines() as (_, a, b):
        a.hold(1)  # b stands by
        b.transcripts.append("1/1", "k10", 10, "held", replies=("re: held",), at_ms=1.0)
        for e in (entry("k12", 12, "my password: hunter2"), entry("k5", 5, "old")):
            b.tail.tell(TurnSeen(e))
        b.tail.tell(TurnSeen(entry("k10", 10, "held")))  # held already: left out
        wait_for(lambda: tail_view(b)["loose"] == 3, 10, "three loose turns")
        a.hold(None)
        b.hold(2)
        wait_for(lambda: tail_view(b)["replayed_epoch"] == 2, 10, "b replays")
        turns = b.transcripts.turns("1/1", 0, 10)
        assert [(t.seq, t.ledger_key) for t in turns] == [(1, "k10"), (2, "k12")]
        assert turns[1].text == "my password: [redacted]"  # kept redacted, as the tail is
        assert turns[1].replies == ("re: my password: [redacted]",)
        assert b.counters.get("tail.loose_stale") == 1
        assert b.counters.get("tail.loose_added") == 1


def test_a_marker_heard_after_the_takeover_replayed_still_adds_its_turn() -> None:
    """The lease reaches the LiveTailActor by the gate, at its tick; the markers' news
    through the DeliveryActor: with a mailbox behind (a slow disk under load), a
    TurnSeen sent while delivery stood by can be taken after the tick that replayed.
    Its turn goes in then, after its topic's last turn, once; a stale or known one does
    not (in official CI a topic's next message saw one turn too few)."""
    with machines(SLOW) as (channel, a, b):
        a.hold(1)
        ids = post_many(channel, 2, topics=1)
        wait_for(lambda: all_answered(channel, ids), 20, "a answers")
        wait_for(lambda: b.transcripts.last_seq("1/1") == 0 and tail_view(b)["loose"] == 2,
                 10, "b knows the turns loose")  # fmt: skip
        a.hold(None)
        b.hold(2)
        wait_for(lambda: tail_view(b)["replayed_epoch"] == 2, 10, "b replays")
        assert b.transcripts.last_seq("1/1") == 2
        late = entry("klate", 99, "heard late")
        for e in (late, late, entry("kold", 1, "older than the last turn")):
            b.tail.tell(TurnSeen(e))
        wait_for(lambda: b.counters.get("tail.loose_late") == 3, 10, "b hears them")
        turns = b.transcripts.turns("1/1", 0, 10)
        assert [t.ledger_key for t in turns][2:] == ["klate"]  # once, at the end
        assert b.counters.get("tail.loose_stale") == 1 and tail_view(b)["loose"] == 0
        ids = post_many(channel, 1, topics=1, start=2)
        wait_for(lambda: all_answered(channel, ids), 20, "b answers")
        assert bot_texts(channel, "t0")[-1] == "echo: m2 (earlier turns: 3)"


def test_a_turn_heard_in_a_lapse_of_the_same_term_is_added_when_it_goes_on() -> None:
    """A renewal confirmed just after the local deadline: the gate lapses and comes back
    at the same epoch (no other holder came between). A TurnSeen taken in the lapse is
    kept loose, then added when the term goes on; a newer holder's (this machine was
    fenced) stays loose (an attacking review found the first lost)."""
    with machines(SLOW) as (channel, a, b):
        a.hold(1)
        ids = post_many(channel, 2, topics=1)
        wait_for(lambda: all_answered(channel, ids), 20, "a answers")
        wait_for(lambda: tail_view(b)["loose"] == 2, 10, "b knows the turns loose")
        a.hold(None)
        b.hold(2)
        wait_for(lambda: tail_view(b)["replayed_epoch"] == 2, 10, "b replays")
        newer = replace(entry("knew", 98, "a newer holder's"), prepared_epoch=3)
        b.tail.tell(TurnSeen(newer))  # fenced: the gate still says 2
        b.gate.publish(None, None)  # the lapse
        wait_for(lambda: tail_view(b)["role"] == "buffer", 10, "b's tail stands by")
        b.tail.tell(TurnSeen(entry("klate", 99, "heard in the lapse")))
        wait_for(lambda: tail_view(b)["loose"] == 2, 10, "both kept loose")
        b.gate.publish(2, 10**15)  # renewed: the same epoch
        wait_for(lambda: tail_view(b)["loose"] == 1, 10, "the lapse's turn added")
        keys = [t.ledger_key for t in b.transcripts.turns("1/1", 0, 10)]
        assert keys[2:] == ["klate"] and b.counters.get("tail.loose_late") == 1
        ids = post_many(channel, 1, topics=1, start=2)
        wait_for(lambda: all_answered(channel, ids), 20, "b answers")
        assert bot_texts(channel, "t0")[-1] == "echo: m2 (earlier turns: 3)"


def test_replay_appends_loose_turns_per_topic_in_message_order_after_the_chain() -> None:
    transcripts, counters = MemoryTranscriptStore(), Counters()
    transcripts.append("1/1", "k1", 1, "one", replies=(), at_ms=1.0)
    transcripts.append("1/1", "k2", 2, "two", replies=(), at_ms=2.0)
    loose = LooseTurns()
    for e in (entry("k4", 4, "four"), entry("k3", 3, "three"), entry("k2", 2, "two")):
        loose.add(LooseTurn.of(e, ()))
    loose.add(LooseTurn.of(entry("q7", 7, "other", topic="2/1"), ()))
    key = nacl.public.PrivateKey.generate()
    done = replay(MemoryLiveTailBuffer(), transcripts, key, counters, loose.take())
    assert [t.ledger_key for t in transcripts.turns("1/1", 0, 10)] == ["k1", "k2", "k3", "k4"]
    assert [t.ledger_key for t in transcripts.turns("2/1", 0, 10)] == ["q7"]
    assert (done.loose_added, done.loose_stale) == (3, 0)
    assert counters.get("tail.loose_added") == 3 and len(loose) == 0


def test_place_never_puts_a_turn_before_a_held_one() -> None:
    turns = [LooseTurn.of(entry(f"k{n}", n, f"m{n}"), ()) for n in (9, 3, 7, 5)]
    placed = place(turns, 5, {"k5"})
    assert [t.ledger_key for t in placed.added] == ["k7", "k9"]
    assert (placed.stale, placed.known) == (1, 1)  # k3 older than the last turn; k5 held
    assert place(turns, None, set()).added == tuple(sorted(turns, key=lambda t: t.message_id))


def test_loose_turns_are_bounded_the_oldest_dropped_first() -> None:
    loose = LooseTurns()
    dropped = sum(loose.add(LooseTurn("1/1", f"k{n}", n, "t", (), 0.0)) for n in range(10_003))
    assert dropped == 3 and len(loose) == 10_000
    kept = loose.take()["1/1"]
    assert kept[0].ledger_key == "k3" and kept[-1].ledger_key == "k10002"
    assert loose.add(LooseTurn("1/1", "k", 1, "t", (), 0.0)) == 0  # room again


def test_loose_turns_keep_only_redacted_text_and_drop_what_the_chain_brings() -> None:
    patterns = compile_redactions(Settings().redactions)
    turn = LooseTurn.of(entry("k1", 1, "token=abcdef123456 please"), patterns)
    assert "abcdef123456" not in turn.text + "".join(turn.replies)
    loose = LooseTurns(limit=2)
    loose.add(turn)
    loose.discard("k1")
    loose.discard("never there")
    assert len(loose) == 0


def test_a_marker_whose_turn_the_chain_brought_first_is_not_kept_loose() -> None:
    """The markers' news (DeliveryActor) and the chain (a flush) come by two actors, in
    either order: a turn the chain already brought must not linger loose (a background
    run of the suite met it: loose stayed 1 after every frame was in)."""
    loose = LooseTurns(limit=2)
    loose.discard("k1")  # the chain first
    assert loose.add(LooseTurn.of(entry("k1", 1, "one"), ())) == 0 and len(loose) == 0
    for n in (2, 3, 4):  # the memory of the chain is bounded, oldest forgotten first
        loose.discard(f"k{n}")
    loose.add(LooseTurn.of(entry("k1", 1, "one"), ()))
    assert len(loose) == 1
