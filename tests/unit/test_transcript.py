"""The pure transcript rules (baton.core.transcript): the strict turn encoding, the
decide_put table, and a hypothesis property: a standby fed a holder's turns in any order
and number, re-requesting from its last seq whenever it sees a gap, ends holding exactly
the holder's transcript and never reports a conflict."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.core.errors import PeerFault, TranscriptError, TranscriptRefused
from baton.core.ledger_marker import MAX_ID, MAX_REPLIES
from baton.core.transcript import PutResult, TranscriptTurn, decide_put
from baton.stores.transcript_memory import MemoryTranscriptStore

R = PutResult


def turn(seq: int, topic: str = "1/0", key: str | None = None, text: str = "hi") -> TranscriptTurn:
    key = f"memory:{topic}:{seq}" if key is None else key
    return TranscriptTurn(topic, seq, key, seq, text, ("r1", "r2"), 10.0 * seq)


GOOD = turn(3).to_json()


def test_a_turn_round_trips_through_json() -> None:
    t = turn(3)
    doc = json.loads(json.dumps(t.to_json()))
    assert doc == GOOD and doc["replies"] == ["r1", "r2"]
    assert TranscriptTurn.from_json(doc) == t


def test_edge_values_are_accepted() -> None:
    t = TranscriptTurn.from_json(
        GOOD | {"seq": MAX_ID, "message_id": 0, "text": "", "replies": [], "at_ms": 5}
    )
    assert (t.seq, t.message_id, t.text, t.replies) == (MAX_ID, 0, "", ())
    assert t.at_ms == 5.0 and isinstance(t.at_ms, float)  # held as a float
    assert (
        len(TranscriptTurn.from_json(GOOD | {"replies": ["r"] * MAX_REPLIES}).replies)
        == MAX_REPLIES
    )
    assert TranscriptTurn.from_json(GOOD | {"text": "\U0001f600 é"}).text == "\U0001f600 é"


REFUSED: dict[str, object] = {
    "not an object": ["1/0", 3],
    "a missing field": {k: v for k, v in GOOD.items() if k != "at_ms"},
    "an unknown field": GOOD | {"epoch": 1},
    "a non-string key": {**GOOD, 1: "x"},
    "seq 0": GOOD | {"seq": 0},
    "a negative seq": GOOD | {"seq": -1},
    "seq beyond MAX_ID": GOOD | {"seq": MAX_ID + 1},
    "a bool seq": GOOD | {"seq": True},
    "a float seq": GOOD | {"seq": 3.0},
    "a string seq": GOOD | {"seq": "3"},
    "a bool message_id": GOOD | {"message_id": False},
    "a negative message_id": GOOD | {"message_id": -1},
    "an empty topic": GOOD | {"topic": ""},
    "a null topic": GOOD | {"topic": None},
    "an empty ledger_key": GOOD | {"ledger_key": ""},
    "a numeric ledger_key": GOOD | {"ledger_key": 7},
    "a numeric text": GOOD | {"text": 7},
    "replies as a string": GOOD | {"replies": "r1"},
    "replies as an object": GOOD | {"replies": {"0": "r1"}},
    "a numeric reply": GOOD | {"replies": ["r1", 2]},
    "too many replies": GOOD | {"replies": ["r"] * (MAX_REPLIES + 1)},
    "a lone surrogate in the text": GOOD | {"text": "a\ud800b"},
    "a lone surrogate in the topic": GOOD | {"topic": "\udfff"},
    "a lone surrogate in the ledger_key": GOOD | {"ledger_key": "k\ud83d"},
    "a lone surrogate in a reply": GOOD | {"replies": ["ok", "\udc00"]},
    "a bool at_ms": GOOD | {"at_ms": True},
    "a string at_ms": GOOD | {"at_ms": "1.0"},
    "a NaN at_ms": GOOD | {"at_ms": float("nan")},
    "an infinite at_ms": GOOD | {"at_ms": float("inf")},
    "an at_ms past a float's range": GOOD | {"at_ms": 10**400},
}


@pytest.mark.parametrize("doc", REFUSED.values(), ids=list(REFUSED))
def test_from_json_refuses_any_other_shape(doc: object) -> None:
    with pytest.raises(TranscriptRefused) as caught:
        TranscriptTurn.from_json(doc)
    assert caught.value.code == "transcript_refused"
    assert isinstance(caught.value, PeerFault)  # dropped and counted at the boundary


def test_a_turn_cannot_be_built_malformed() -> None:
    with pytest.raises(TranscriptRefused):
        replace(turn(1), seq=0)
    with pytest.raises(TranscriptRefused):
        TranscriptTurn("1/0", 1, "k", 1, "x", ["r"], 1.0)  # type: ignore[arg-type]


T1, T2, T3 = turn(1), turn(2), turn(3)
OTHER2 = turn(2, text="a different history")

# (last, held, keyed, turn) -> result
DECISIONS: dict[str, tuple[Any, Any, Any, TranscriptTurn, PutResult]] = {
    "the first turn of an empty topic": (None, None, None, T1, R.ADDED),
    "the next turn": (T1, None, None, T2, R.ADDED),
    "the first turn held again": (T1, T1, T1, T1, R.DUPLICATE),
    "an older turn held again": (T3, T2, T2, T2, R.DUPLICATE),
    "a turn past the next of an empty topic": (None, None, None, T2, R.GAP),
    "a turn past the next": (T1, None, None, T3, R.GAP),
    "a held seq with other content": (T3, T2, T2, OTHER2, R.CONFLICT),
    "a held seq with another time": (T2, T2, T2, replace(T2, at_ms=1.5), R.CONFLICT),
    "a held seq with other replies": (T2, T2, T2, replace(T2, replies=()), R.CONFLICT),
    "an old seq not held": (T3, None, None, T2, R.CONFLICT),
    "the next seq for a key held at another": (
        T2,
        None,
        T1,
        turn(3, key=T1.ledger_key),
        R.CONFLICT,
    ),
    "a gap for a key held at another": (T1, None, T1, turn(5, key=T1.ledger_key), R.CONFLICT),
}


@pytest.mark.parametrize("case", DECISIONS.values(), ids=list(DECISIONS))
def test_decide_put(case: tuple[Any, Any, Any, TranscriptTurn, PutResult]) -> None:
    last, held, keyed, incoming, want = case
    assert decide_put(last, held, incoming, keyed) is want
    if keyed is None:  # keyed is optional: leaving it out means "no such key held"
        assert decide_put(last, held, incoming) is want


MISUSE: dict[str, tuple[Any, Any, Any]] = {
    "last of another topic": (turn(1, topic="2/0"), None, None),
    "held of another topic": (T2, turn(2, topic="2/0"), None),
    "held at another seq": (T3, T3, None),
    "keyed of another topic": (T1, None, turn(1, topic="2/0", key=T2.ledger_key)),
    "keyed under another key": (T1, None, T1),
}


@pytest.mark.parametrize("args", MISUSE.values(), ids=list(MISUSE))
def test_decide_put_refuses_arguments_about_something_else(args: tuple[Any, Any, Any]) -> None:
    last, held, keyed = args
    with pytest.raises(TranscriptError) as caught:
        decide_put(last, held, T2, keyed)
    assert not isinstance(caught.value, PeerFault)  # our own misuse fails loudly


# --- the property: any order and number of deliveries ends in the holder's transcript


def holder_with(counts: list[int]) -> MemoryTranscriptStore:
    holder = MemoryTranscriptStore()
    for n, count in enumerate(counts):
        for i in range(count):
            holder.append(
                f"{n}/0", f"memory:{n}/0:{i}", i, f"m{i}", replies=(f"r{i}",), at_ms=float(i)
            )
    return holder


def everything(store: MemoryTranscriptStore) -> dict[str, list[TranscriptTurn]]:
    return {topic: store.turns(topic, 0, 1000) for topic in store.last_seqs()}


@settings(max_examples=300, deadline=None)
@given(
    counts=st.lists(st.integers(1, 8), min_size=1, max_size=3),
    extra=st.lists(st.integers(0, 1000), max_size=20),
    order=st.randoms(use_true_random=False),
    rerequest_at=st.lists(st.integers(0, 1000), max_size=40),
)
def test_any_delivery_order_with_rerequests_ends_in_the_holders_transcript(
    counts: list[int], extra: list[int], order: Any, rerequest_at: list[int]
) -> None:
    holder = holder_with(counts)
    sent = [t for turns in everything(holder).values() for t in turns]
    deliveries = sent + [sent[i % len(sent)] for i in extra]  # each once, some again
    order.shuffle(deliveries)
    queue, standby = deque(deliveries), MemoryTranscriptStore()
    spots = deque(rerequest_at)
    added, steps = 0, 0
    while queue:
        steps += 1
        assert steps < 10_000, "the exchange does not settle"
        incoming = queue.popleft()
        before = standby.last_seq(incoming.topic)
        result = standby.put(incoming)
        assert result is not R.CONFLICT
        assert standby.last_seq(incoming.topic) == before + (result is R.ADDED)
        added += result is R.ADDED
        if result is R.GAP:  # re-request from last + 1; the answer lands anywhere later
            answer = holder.turns(incoming.topic, before, 1000)
            assert answer and answer[0].seq == before + 1
            at = min(spots.popleft() if spots else len(queue), len(queue))
            for offset, missing in enumerate(answer):
                queue.insert(at + offset, missing)
    assert everything(standby) == everything(holder)
    assert standby.last_seqs() == holder.last_seqs() == {f"{n}/0": c for n, c in enumerate(counts)}
    assert added == len(sent)  # every turn stored exactly once
    for t in sent:  # and the stream may repeat itself for ever
        assert standby.put(t) is R.DUPLICATE
