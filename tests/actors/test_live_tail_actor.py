"""LiveTailActor with in-memory parts (tests/actors/machines.py): the standby's buffer
mirrors the holder's transcripts, sealed; only the holder's frames at its epoch are
taken; a link that drops, repeats and reorders frames still ends with the exact chain;
a takeover replays the buffer first (and the chain wins over a parted copy); secrets
never leave the holder."""

from __future__ import annotations

import random
from typing import Any

import pytest

from baton.actors.delivery_messages import GetDelivery
from baton.actors.messages import EnvelopeReceived
from baton.actors.tail_messages import GetTail
from baton.channels.memory import MemoryChannel
from baton.core.errors import TranscriptCorrupt
from baton.core.lease_types import LeaseChanged, Phase
from baton.wire.envelope import Envelope, make_envelope
from baton.wire.tail_transport import unseal
from tests.actors.machines import (
    Machine,
    all_answered,
    bot_texts,
    post_many,
    tail_caught_up,
)
from tests.waits import wait_for

pytestmark = pytest.mark.timeout(60)


def chains(m: Machine) -> dict[str, list[str]]:
    """The standby's buffer as ledger keys per topic."""
    return {t: [f.key for f in m.buffer.frames(t, 0, 10_000)] for t in m.buffer.heads()}


def transcript_keys(m: Machine) -> dict[str, list[str]]:
    return {
        t: [turn.ledger_key for turn in m.transcripts.turns(t, 0, 10_000)]
        for t in m.transcripts.last_seqs()
    }


def test_the_standby_buffer_mirrors_the_holders_transcripts_sealed(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, b = pair
    a.hold(1)
    ids = post_many(channel, 12)
    wait_for(lambda: all_answered(channel, ids), 20, "answered")
    wait_for(lambda: tail_caught_up(a, b), 10, "the live tail")
    assert chains(b) == transcript_keys(a) and len(chains(b)) == 3
    frame = b.buffer.frames("1/1", 0, 1)[0]
    # sealed at rest: not even the reply's text (a 2-byte needle such as b"m0" turns up
    # in random ciphertext about once in 300 boxes: a test that fails by chance)
    assert b"echo: m0 (earlier turns: 0)" not in frame.box
    turn = unseal(frame, b.encryption_key)
    assert (turn.text, turn.replies) == ("m0", ("echo: m0 (earlier turns: 0)",))
    assert b.counters.get("tail.frame.added") == 12 and a.counters.get("tail.turns") == 12
    view: dict[str, Any] = a.tail.ask(GetTail(), timeout=5)
    assert view["role"] == "source" and view["turns"] == 12
    wait_for(lambda: a.tail.ask(GetTail(), timeout=5)["unconfirmed"] == {b.id: 0}, 10, "acks")


def flush_from(sender: str, to: str, epoch: int, body: dict[str, Any] | None = None) -> Envelope:
    body = body if body is not None else {"frames": [["1/1", 1, "k1", "", "Ym94"]], "heads": {}}
    return make_envelope("tail", sender, to, body, f"id{epoch}", epoch=epoch)


def test_only_the_holders_flushes_at_its_epoch_are_taken(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    _, a, b = pair
    a.hold(3)  # b learns: a holds epoch 3
    stranger = "m_aaaaaaaaaaaaaaaa"
    for env in (flush_from(stranger, b.id, 3), flush_from(a.id, b.id, 2)):
        b.tail.tell(EnvelopeReceived(env))
    a.tail.tell(EnvelopeReceived(flush_from(b.id, a.id, 3)))  # a holds: it takes none
    wait_for(lambda: b.counters.get("tail.refused.not_holder") == 2, 10, "b refuses two")
    wait_for(lambda: a.counters.get("tail.refused.not_holder") == 1, 10, "a refuses one")
    b.tail.tell(EnvelopeReceived(flush_from(a.id, b.id, 3)))  # the holder's: taken
    wait_for(lambda: b.counters.get("tail.frame.added") == 1, 10, "taken")
    assert chains(b) == {"1/1": ["k1"]} and chains(a) == {}


def test_a_malformed_flush_or_ack_is_counted_and_the_actor_lives(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, b = pair
    a.hold(1)
    bad_flush = flush_from(a.id, b.id, 1, {"frames": [["1/1", 0, "", "", ""]], "heads": {}})
    bad_ack = make_envelope(
        "tail_ack", b.id, a.id, {"have": {"1/1": "x"}, "pull": True}, "i", epoch=1
    )
    wait_for(lambda: a.tail.ask(GetTail(), timeout=5)["role"] == "source", 10, "a holds")
    b.tail.tell(EnvelopeReceived(bad_flush))
    a.tail.tell(EnvelopeReceived(bad_ack))
    wait_for(lambda: b.counters.get("tail.refused.malformed") == 1, 10, "the flush refused")
    wait_for(lambda: a.counters.get("tail.refused.malformed") == 1, 10, "the ack refused")
    ids = post_many(channel, 3)
    wait_for(lambda: all_answered(channel, ids), 20, "answered all the same")
    wait_for(lambda: tail_caught_up(a, b), 10, "and streamed")


class Chaos:
    """A link that drops, repeats and reorders tail envelopes (seeded), until calm."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.held: list[Envelope] = []
        self.calm = False
        self.meddled = 0

    def __call__(self, env: Envelope) -> list[Envelope]:
        if self.calm or not env.type.startswith("tail"):
            return [env]
        self.meddled += 1
        roll = self.rng.random()
        if roll < 0.3:
            return []  # dropped
        self.held.append(env)
        if roll < 0.5:
            self.held.append(env)  # repeated
        if self.rng.random() < 0.5:
            return []  # held back, delivered later out of order
        out, self.held = self.held, []
        self.rng.shuffle(out)
        return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_frames_dropped_repeated_and_reordered_on_the_wire_end_exact(
    pair: tuple[MemoryChannel, Machine, Machine], seed: int
) -> None:
    channel, a, b = pair
    flushes, acks = Chaos(seed), Chaos(seed + 100)
    a.link, b.link = flushes, acks
    a.hold(1)
    for batch in range(6):  # turns over many flushes, each meddled with
        before = flushes.meddled
        ids = post_many(channel, 8, start=8 * batch, topics=4)
        wait_for(lambda ids=ids: all_answered(channel, ids), 30, "answered")  # type: ignore[misc]
        wait_for(lambda n=before: flushes.meddled > n, 10, "a flush of the new turns")  # type: ignore[misc]
    flushes.calm = acks.calm = True
    wait_for(lambda: tail_caught_up(a, b), 20, "the live tail, once the link behaves")
    assert chains(b) == transcript_keys(a)
    assert b.counters.get("tail.frame.duplicate") + b.counters.get("tail.frame.refused") > 0


def test_a_takeover_replays_the_tail_and_the_chain_wins_over_a_parted_copy(
    pair: tuple[MemoryChannel, Machine, Machine],
) -> None:
    channel, a, b = pair
    # b's turns never reach a: neither its live tail nor its markers (which would make
    # them loose turns on a, added at a's takeover)
    b.link = lambda env: [] if env.type in ("tail", "marker") else [env]
    b.hold(1)
    first = post_many(channel, 3, topics=1)
    wait_for(lambda: all_answered(channel, first), 20, "b answers")
    b.hold(None)
    wait_for(lambda: b.ref.ask(GetDelivery(), timeout=5)["term"] is None, 10, "b stands by")
    a.hold(2)
    second = post_many(channel, 2, start=3, topics=1)
    wait_for(lambda: all_answered(channel, second), 20, "a answers")
    b.link = None
    assert bot_texts(channel, "t0")[3:] == [  # a never got b's turns: its count restarts
        "echo: m3 (earlier turns: 0)",
        "echo: m4 (earlier turns: 1)",
    ]
    wait_for(lambda: tail_caught_up(a, b), 10, "a's chain reaches b")
    assert len(transcript_keys(b)["1/1"]) == 3  # b's own copy, not a's, until it holds
    a.hold(None)
    b.hold(3)
    third = post_many(channel, 1, start=5, topics=1)
    wait_for(lambda: all_answered(channel, third), 20, "b answers again")
    assert bot_texts(channel, "t0")[-1] == "echo: m5 (earlier turns: 2)"  # a's chain won
    assert transcript_keys(b)["1/1"][:2] == transcript_keys(a)["1/1"]
    assert b.counters.get("tail.parted") == 3


def test_secrets_never_leave_the_holder(pair: tuple[MemoryChannel, Machine, Machine]) -> None:
    channel, a, b = pair
    a.hold(1)
    mid = channel.post_user_message("t0", "my password: hunter2", "c-secret-1")
    wait_for(lambda: all_answered(channel, {mid}), 20, "answered")
    wait_for(lambda: tail_caught_up(a, b), 10, "streamed")
    assert a.transcripts.history("1/1", 1)[0].text == "my password: hunter2"
    a.hold(None)
    b.hold(2)
    b.tail.tell(LeaseChanged(Phase.HOLDING, b.id, 2, "acquired"))
    more = channel.post_user_message("t0", "and now?", "c-secret-2")
    wait_for(lambda: all_answered(channel, {more}), 20, "b answers")
    first = b.transcripts.history("1/1", 2)[0]
    assert "hunter2" not in first.text + "".join(first.replies)
    assert first.text == "my password: [redacted]"


def test_an_unreadable_transcript_costs_the_history_not_the_reply(
    pair: tuple[MemoryChannel, Machine, Machine], monkeypatch: pytest.MonkeyPatch
) -> None:
    channel, a, _ = pair

    def broken(topic: str, limit: int) -> list[Any]:
        raise TranscriptCorrupt("turn 1 of '1/1' does not decode")

    monkeypatch.setattr(a.transcripts, "history", broken)
    a.hold(1)
    ids = post_many(channel, 2, topics=1)
    wait_for(lambda: all_answered(channel, ids), 20, "answered all the same")
    assert bot_texts(channel, "t0") == [
        "echo: m0 (earlier turns: 0)",
        "echo: m1 (earlier turns: 0)",
    ]
    assert a.counters.get("tail.history_failed") == 2
