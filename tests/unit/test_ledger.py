"""The pure ledger rules (baton.core.ledger, ledger_types, ledger_marker): the transition
table, reply keys, the stored form, strict marker decoding, apply_marker, and a
hypothesis property: whatever operations and markers arrive, in whatever order and
however often, states never move back, a committed reply stays committed, and the
ledger never applies anything twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.core.errors import LedgerCorrupt, LedgerTransitionError, MarkerRefused, PeerFault
from baton.core.inbound import InboundMessage
from baton.core.ledger import (
    MAX_ERROR_CHARS,
    MAX_REPLIES,
    LedgerEntry,
    LedgerState,
    ReplyMarker,
    ReplyRecord,
    ack,
    apply_marker,
    begin,
    commit,
    fail,
    marker_for,
    prepare,
    reply_key,
)

S = LedgerState
MSG = InboundMessage("memory", 5, 1, 0, 7, "hello", "ann")
KEY = MSG.key  # "memory:1/0:7"


def at(state: LedgerState, replies: tuple[str, ...] = ("a", "b")) -> LedgerEntry:
    """An entry brought to ``state`` by the rules themselves."""
    entry = LedgerEntry.of(MSG, 1.0)
    if state.rank >= S.PROCESSING.rank:
        entry = begin(entry, 2.0)
    if state.rank >= S.PREPARED.rank:
        entry = prepare(entry, replies, 3, 3.0)
    if state.rank >= S.COMMITTED.rank:
        for n in range(len(replies)):
            entry = commit(entry, n, 100 + n, 3, 4.0)
    if state.rank >= S.ACKED.rank:
        entry = ack(entry, 5.0)
    assert entry.state is state
    return entry


# --- the transition table -----------------------------------------------------------

Op = Callable[[LedgerEntry], LedgerEntry]
OPS: dict[str, Op] = {
    "begin": lambda e: begin(e, 9.0),
    "fail": lambda e: fail(e, "boom", 9.0),
    "prepare": lambda e: prepare(e, ["x"], 4, 9.0),
    "commit": lambda e: commit(e, 0, 555, 4, 9.0),
    "ack": lambda e: ack(e, 9.0),
}
SAME, RAISES = "same", "raises"
TABLE: list[tuple[str, LedgerState, Any]] = [
    ("begin", S.RECEIVED, S.PROCESSING),
    ("begin", S.PROCESSING, S.PROCESSING),
    ("begin", S.PREPARED, RAISES),
    ("begin", S.COMMITTED, RAISES),
    ("begin", S.ACKED, RAISES),
    ("fail", S.RECEIVED, RAISES),
    ("fail", S.PROCESSING, S.PROCESSING),
    ("fail", S.PREPARED, RAISES),
    ("fail", S.COMMITTED, RAISES),
    ("fail", S.ACKED, RAISES),
    ("prepare", S.RECEIVED, S.PREPARED),
    ("prepare", S.PROCESSING, S.PREPARED),
    ("prepare", S.PREPARED, SAME),
    ("prepare", S.COMMITTED, SAME),
    ("prepare", S.ACKED, SAME),
    ("commit", S.RECEIVED, RAISES),
    ("commit", S.PROCESSING, RAISES),
    ("commit", S.PREPARED, S.PREPARED),  # one of two replies
    ("commit", S.COMMITTED, SAME),
    ("commit", S.ACKED, SAME),
    ("ack", S.RECEIVED, RAISES),
    ("ack", S.PROCESSING, RAISES),
    ("ack", S.PREPARED, RAISES),
    ("ack", S.COMMITTED, S.ACKED),
    ("ack", S.ACKED, SAME),
]


@pytest.mark.parametrize(("op", "state", "outcome"), TABLE, ids=lambda v: str(v))
def test_transition_table(op: str, state: LedgerState, outcome: Any) -> None:
    entry = at(state)
    before = replace(entry)
    if outcome == RAISES:
        with pytest.raises(LedgerTransitionError, match=KEY):
            OPS[op](entry)
        assert entry == before
    elif outcome == SAME:
        assert OPS[op](entry) is entry
    else:
        after = OPS[op](entry)
        assert after.state is outcome
        assert after != entry and after.updated_ms == 9.0


def test_the_table_covers_every_step_and_state() -> None:
    assert {(op, state) for op, state, _ in TABLE} == {(op, s) for op in OPS for s in S}


def test_begin_counts_attempts_and_fail_keeps_the_last_error_truncated() -> None:
    entry = begin(begin(at(S.RECEIVED), 2.0), 3.0)
    assert entry.attempts == 2
    failed = fail(entry, "x" * 5000, 4.0)
    assert failed.last_error == "x" * MAX_ERROR_CHARS and failed.state is S.PROCESSING
    assert fail(failed, "second", 5.0).last_error == "second"


def test_prepare_fixes_texts_keys_and_epoch_and_the_first_texts_win() -> None:
    entry = prepare(at(S.PROCESSING), ["one", "two"], 3, 7.0)
    assert [r.text for r in entry.replies] == ["one", "two"]
    assert [r.reply_key for r in entry.replies] == [reply_key(KEY, 0), reply_key(KEY, 1)]
    assert entry.prepared_epoch == 3 and entry.uncommitted() == entry.replies
    assert prepare(entry, ["other"], 4, 8.0) is entry


def test_no_reply_at_all_is_committed_at_once() -> None:
    entry = prepare(at(S.PROCESSING), [], 2, 7.0)
    assert entry.state is S.COMMITTED and entry.replies == ()
    assert ack(entry, 8.0).done


@pytest.mark.parametrize(
    ("replies", "epoch"),
    [
        (["r"] * (MAX_REPLIES + 1), 1),
        ("a string is not a list of replies", 1),
        ([1, 2], 1),
        (["r"], 0),
        (["r"], True),
    ],
)
def test_prepare_refuses_misuse(replies: Any, epoch: Any) -> None:
    with pytest.raises(LedgerTransitionError):
        prepare(at(S.PROCESSING), replies, epoch, 1.0)


def test_commit_marks_one_reply_then_the_entry_and_never_twice() -> None:
    entry = commit(at(S.PREPARED), 1, 201, 3, 5.0)
    assert entry.state is S.PREPARED
    assert [r.committed for r in entry.replies] == [False, True]
    assert entry.uncommitted() == (entry.replies[0],)
    assert commit(entry, 1, 999, 4, 6.0) is entry  # the first message id and epoch stay
    done = commit(entry, 0, 200, 3, 6.0)
    assert done.state is S.COMMITTED and done.uncommitted() == ()
    assert (done.replies[1].message_id, done.replies[1].epoch) == (201, 3)


@pytest.mark.parametrize("state", [S.PREPARED, S.COMMITTED, S.ACKED])
@pytest.mark.parametrize("index", [-1, 2, 10])
def test_commit_refuses_a_reply_the_entry_does_not_have(state: LedgerState, index: int) -> None:
    with pytest.raises(LedgerTransitionError, match="no reply"):
        commit(at(state), index, 1, 3, 9.0)


def test_reply_keys_are_deterministic() -> None:
    assert reply_key("memory:1/0:7", 0) == (
        "32ba07c40b03a1fb37944926c19bd1200ba932c2c35942eb58d34387e5e7bc99"
    )
    keys = {reply_key(k, i) for k in ("memory:1/0:7", "memory:1/0:8") for i in (0, 1)}
    assert len(keys) == 4 and all(len(k) == 64 for k in keys)


@pytest.mark.parametrize("state", list(S))
def test_entries_survive_their_json_form(state: LedgerState) -> None:
    entry = fail(at(S.PROCESSING), "e", 2.0) if state is S.PROCESSING else at(state)
    assert LedgerEntry.from_json(json.loads(json.dumps(entry.to_json()))) == entry


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: d.pop("text"),
        lambda d: d.update(extra=1),
        lambda d: d.update(state="done"),
        lambda d: d.update(attempts=True),
        lambda d: d.update(replies="ab"),
        lambda d: d["replies"][0].update(committed=1),
        lambda d: d.update(received_ms="now"),
    ],
)
def test_a_stored_entry_of_another_shape_is_corrupt(spoil: Callable[[dict[str, Any]], Any]) -> None:
    doc = at(S.PREPARED).to_json()
    spoil(doc)
    with pytest.raises(LedgerCorrupt):
        LedgerEntry.from_json(doc)


# --- markers ------------------------------------------------------------------------


def good_marker(**changes: Any) -> dict[str, Any]:
    doc = marker_for(commit(at(S.PREPARED), 1, 42, 3, 5.0), "committed", 3, 1).to_json()
    doc.update(changes)
    return doc


def test_a_marker_survives_its_json_form() -> None:
    doc = json.loads(json.dumps(good_marker()))
    marker = ReplyMarker.from_json(doc)
    assert (marker.kind, marker.index, marker.sent_message_id, marker.replies) == (
        "committed",
        1,
        42,
        ("a", "b"),
    )
    assert marker.to_json() == doc


def test_a_group_chat_has_a_negative_chat_id() -> None:
    msg = InboundMessage("telegram", 1, -1001234, 9, 3, "hi", "bob")
    entry = prepare(LedgerEntry.of(msg, 0.0), ["ok"], 1, 1.0)
    marker = ReplyMarker.from_json(marker_for(entry, "prepared", 1).to_json())
    assert marker.topic == "-1001234/9" and marker.key == msg.key


BAD_MARKERS: list[tuple[str, Any]] = [
    ("not an object", ["committed"]),
    ("a missing field", {k: v for k, v in good_marker().items() if k != "sender"}),
    ("an unknown field", good_marker(signature="x")),
    ("an unknown kind", good_marker(kind="sent")),
    ("a bool for an int", good_marker(message_id=True)),
    ("a string for an int", good_marker(epoch="3")),
    ("a float for an int", good_marker(thread_id=0.0)),
    ("a negative message id", good_marker(message_id=-7, key="memory:1/0:-7")),
    ("a negative thread id", good_marker(thread_id=-1, topic="1/-1", key="memory:1/-1:7")),
    ("a negative update id", good_marker(update_id=-1)),
    ("a negative sent message id", good_marker(sent_message_id=-1)),
    ("an id beyond 2**53", good_marker(update_id=2**60)),
    ("epoch 0", good_marker(epoch=0)),
    ("a key of another message", good_marker(key="memory:1/0:8")),
    ("a key of another channel", good_marker(key="local:1/0:7")),
    ("a topic of another chat", good_marker(topic="2/0", key="memory:2/0:7")),
    ("a committed marker without index", good_marker(index=None)),
    ("a committed index beyond the replies", good_marker(index=2)),
    ("a negative index", good_marker(index=-1)),
    ("a prepared marker naming a reply", good_marker(kind="prepared")),
    ("a prepared marker with a sent id", good_marker(kind="prepared", index=None)),
    ("a received marker naming a reply", good_marker(kind="received", replies=[])),
    (
        "a received marker with replies",
        good_marker(kind="received", index=None, sent_message_id=None),
    ),
    ("too many replies", good_marker(replies=["r"] * (MAX_REPLIES + 1))),
    ("replies as a string", good_marker(replies="ab")),
    ("a reply that is not text", good_marker(replies=["a", 2])),
    ("text that is not a string", good_marker(text=None)),
    ("a lone surrogate", good_marker(text="\ud800")),
    ("a bad channel name", good_marker(channel="Mem:ory", key="Mem:ory:1/0:7")),
]


@pytest.mark.parametrize(("why", "doc"), BAD_MARKERS, ids=[w for w, _ in BAD_MARKERS])
def test_bad_markers_are_refused(why: str, doc: Any) -> None:
    with pytest.raises(MarkerRefused) as caught:
        ReplyMarker.from_json(doc)
    assert isinstance(caught.value, PeerFault) and caught.value.code == "marker_refused"


def test_marker_for_announces_only_what_happened() -> None:
    with pytest.raises(LedgerTransitionError):
        marker_for(at(S.PROCESSING), "prepared", 1)
    with pytest.raises(LedgerTransitionError, match="not committed"):
        marker_for(at(S.PREPARED), "committed", 3, 0)
    with pytest.raises(LedgerTransitionError):
        marker_for(at(S.PREPARED), "committed", 3, None)
    with pytest.raises(LedgerTransitionError):
        marker_for(at(S.PREPARED), "prepared", 3, 0)
    marker = marker_for(at(S.PREPARED), "prepared", 3)
    assert (marker.replies, marker.index, marker.update_id) == (("a", "b"), None, 5)


def prepared_marker(replies: tuple[str, ...] = ("a", "b"), epoch: int = 3) -> ReplyMarker:
    return marker_for(at(S.PREPARED, replies), "prepared", epoch)


def committed_marker(index: int, replies: tuple[str, ...] = ("a", "b")) -> ReplyMarker:
    return marker_for(at(S.COMMITTED, replies), "committed", 3, index)


def test_apply_marker_creates_the_entry_a_standby_never_saw() -> None:
    entry = apply_marker(None, prepared_marker(), 50.0)
    assert (entry.key, entry.state, entry.prepared_epoch) == (KEY, S.PREPARED, 3)
    assert (entry.text, entry.sender, entry.update_id, entry.received_ms) == (
        "hello",
        "ann",
        5,
        50.0,
    )
    assert [r.reply_key for r in entry.replies] == [reply_key(KEY, 0), reply_key(KEY, 1)]
    one = apply_marker(None, committed_marker(1), 50.0)
    assert [(r.committed, r.message_id) for r in one.replies] == [(False, None), (True, 101)]
    single = apply_marker(None, committed_marker(0, ("only",)), 50.0)
    assert single.state is S.COMMITTED


def test_apply_marker_moves_a_received_entry_forward_with_the_holders_texts() -> None:
    entry = apply_marker(at(S.PROCESSING), committed_marker(0), 50.0)
    assert entry.state is S.PREPARED and entry.attempts == 1
    assert [(r.text, r.committed) for r in entry.replies] == [("a", True), ("b", False)]


def test_apply_marker_is_idempotent_and_only_moves_forward() -> None:
    entry = apply_marker(apply_marker(None, committed_marker(0), 1.0), committed_marker(1), 2.0)
    assert entry.state is S.COMMITTED
    for marker in (prepared_marker(), committed_marker(0), committed_marker(1)):
        assert apply_marker(entry, marker, 3.0) is entry


def test_the_first_prepared_texts_win_and_a_commit_still_lands() -> None:
    mine = at(S.PREPARED, ("mine", "also mine"))
    other = committed_marker(0, ("theirs", "also theirs"))
    entry = apply_marker(mine, other, 9.0)
    assert [(r.text, r.committed) for r in entry.replies] == [("mine", True), ("also mine", False)]
    beyond = committed_marker(2, ("x", "y", "z"))
    assert apply_marker(mine, beyond, 9.0) is mine  # no such reply here: nothing to apply


def test_an_acked_entry_is_untouched_by_markers() -> None:
    done = at(S.ACKED, ("a",))
    assert apply_marker(done, committed_marker(0, ("a", "b")), 9.0) is done
    assert apply_marker(done, prepared_marker(("z",)), 9.0) is done


def test_a_received_marker_records_the_message_and_nothing_of_its_replies() -> None:
    marker = marker_for(at(S.PROCESSING), "received", 3)
    assert (marker.kind, marker.replies, marker.index) == ("received", (), None)
    assert ReplyMarker.from_json(marker.to_json()) == marker
    fresh = apply_marker(None, marker, 50.0)
    assert (fresh.key, fresh.state, fresh.text, fresh.update_id) == (KEY, S.RECEIVED, "hello", 5)
    prepared = at(S.PREPARED)
    assert apply_marker(prepared, marker_for(prepared, "received", 3), 9.0) is prepared
    with pytest.raises(LedgerTransitionError):
        marker_for(at(S.PROCESSING), "received", 3, 0)


def test_a_marker_for_another_message_is_misuse() -> None:
    other = InboundMessage("memory", 6, 1, 0, 8, "x", "ann")
    with pytest.raises(LedgerTransitionError):
        apply_marker(LedgerEntry.of(other, 0.0), prepared_marker(), 1.0)


# --- the property: the ledger never applies twice ------------------------------------

TEXTS = [(), ("a",), ("a", "b"), ("c", "d", "e")]


def prepared_from(texts: tuple[str, ...], epoch: int) -> ReplyMarker:
    return marker_for(prepare(at(S.PROCESSING), texts, epoch, 1.0), "prepared", epoch)


def committed_marker_from(
    texts: tuple[str, ...], epoch: int, index: int, sent: int | None
) -> ReplyMarker:
    entry = commit(prepare(at(S.PROCESSING), texts, epoch, 1.0), index, sent, epoch, 1.0)
    return marker_for(entry, "committed", epoch, index)


marker_st = st.builds(
    lambda texts, epoch, kind, index, sent: (
        committed_marker_from(texts, epoch, index % len(texts), sent)
        if kind == "committed" and texts
        else prepared_from(texts, epoch)
    ),
    st.sampled_from(TEXTS),
    st.integers(1, 4),
    st.sampled_from(["prepared", "committed"]),
    st.integers(0, 5),
    st.none() | st.integers(0, 9),
)


op_st = st.one_of(
    st.tuples(st.just("begin")),
    st.tuples(st.just("fail"), st.sampled_from(["e1", "e2"])),
    st.tuples(st.just("prepare"), st.sampled_from(TEXTS), st.integers(1, 4)),
    st.tuples(
        st.just("commit"), st.integers(-1, 3), st.none() | st.integers(0, 9), st.integers(1, 4)
    ),
    st.tuples(st.just("ack")),
    st.tuples(st.just("marker"), marker_st),
)


def run(op: tuple[Any, ...], entry: LedgerEntry, now: float) -> LedgerEntry:
    """The entry after ``op``; an illegal op leaves it as it was."""
    try:
        match op:
            case ("begin",):
                return begin(entry, now)
            case ("fail", error):
                return fail(entry, error, now)
            case ("prepare", texts, epoch):
                return prepare(entry, texts, epoch, now)
            case ("commit", index, sent, epoch):
                return commit(entry, index, sent, epoch, now)
            case ("ack",):
                return ack(entry, now)
            case ("marker", marker):
                return apply_marker(entry, marker, now)
    except LedgerTransitionError:
        return entry
    raise AssertionError(op)


def committed(entry: LedgerEntry) -> dict[int, ReplyRecord]:
    return {r.index: r for r in entry.replies if r.committed}


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op_st, max_size=30))
def test_the_ledger_never_moves_back_and_never_applies_twice(ops: list[tuple[Any, ...]]) -> None:
    entry = LedgerEntry.of(MSG, 0.0)
    for now, op in enumerate(ops, start=1):
        after = run(op, entry, float(now))
        assert after.state.rank >= entry.state.rank
        assert committed(after).items() >= committed(entry).items()
        if entry.state.rank >= S.PREPARED.rank:
            assert [(r.text, r.reply_key) for r in after.replies] == [
                (r.text, r.reply_key) for r in entry.replies
            ]
            assert after.prepared_epoch == entry.prepared_epoch
        if op[0] != "begin":  # begin counts a run of the agent: it is meant to repeat
            assert run(op, after, float(now)) == after
        entry = after


@settings(max_examples=200, deadline=None)
@given(
    texts=st.sampled_from(TEXTS[1:]),
    picks=st.lists(st.integers(0, 2), min_size=1, max_size=12),
    with_prepared=st.booleans(),
    order=st.randoms(use_true_random=False),
)
def test_markers_in_any_order_and_number_reach_the_same_end(
    texts: tuple[str, ...], picks: list[int], with_prepared: bool, order: Any
) -> None:
    indices = [p % len(texts) for p in picks]
    markers = [committed_marker_from(texts, 2, i, 10 + i) for i in indices]
    if with_prepared:
        markers.append(prepared_from(texts, 2))
    shuffled = markers + markers[: len(markers) // 2]  # some arrive twice
    order.shuffle(shuffled)
    ends = []
    for sequence in (markers, shuffled):
        entry: LedgerEntry | None = None
        for marker in sequence:
            entry = apply_marker(entry, marker, 1.0)
        ends.append(entry)
    assert ends[0] == ends[1]
    assert ends[0] is not None and set(committed(ends[0])) == set(indices)
    want = S.COMMITTED if len(committed(ends[0])) == len(texts) else S.PREPARED
    assert ends[0].state is want
