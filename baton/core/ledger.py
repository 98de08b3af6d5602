"""MessageProcessingLedger: the rules (sans-IO). Adapters: baton.stores.ledger_sqlite
(SQLite, WAL, 0600) and baton.stores.ledger_memory (the twin); both pass
tests/contract/test_ledger.py. The values (LedgerState, ReplyRecord, LedgerEntry,
QueuedMessage) live in baton.core.ledger_types, the ReplyMarker value and its strict
decoding in baton.core.ledger_marker; this module re-exports both, so callers import
everything ledger from here.

Theory of operation: every inbound message gets one entry, keyed
``channel:topic:message_id`` (InboundMessage.key). Its state only moves forward:

    received -> processing -> reply-prepared -> reply-committed -> acked

- received: recorded from the channel (before the channel cursor may pass it).
- processing: the agent is running on it (``attempts`` counts the runs; a failed run
  records ``last_error`` and stays in processing).
- reply-prepared: the replies are fixed (texts and keys) and may be on their way. The
  first prepared texts win: preparing again changes nothing.
- reply-committed: every reply is known to be delivered (committed one by one). An
  agent that gave no reply goes from prepare straight to reply-committed.
- acked: done; the cursor may pass it. Only acked entries are pruned.

Reply keys are deterministic: ``reply_key(ledger_key, index) = sha256(f"{key}\\n{index}")``
in hex, so every machine derives the same key for the same reply.

Markers (ReplyMarker) come from the holder over the wire and carry enough to create the
entry on a standby that never saw the message. Applying a marker only ever moves an
entry forward; a committed reply stays committed; an older or repeated marker changes
nothing (idempotent). A marker does not carry reply keys: the receiver derives them from
the marker's ledger key, and a marker whose ledger key is not its own
``channel:topic:message_id`` is refused (MarkerRefused).

Invariants kept here (the adapters call these functions, so the rules live in one place):
- Every transition is a pure function ``f(entry, ...) -> entry``. It returns a new entry,
  or the same entry when the step was already taken (prepare, commit, ack, apply_marker
  are idempotent), or raises LedgerTransitionError and nothing changed. The allowed
  source states of each step are one table, ``TRANSITIONS``.
- ``state.rank`` never decreases; a committed reply is never uncommitted; the texts,
  keys and epoch of a prepared entry never change.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Protocol

from baton.core.errors import LedgerTransitionError
from baton.core.inbound import InboundMessage
from baton.core.ledger_marker import MAX_REPLIES, MarkerKind, ReplyMarker
from baton.core.ledger_types import (
    MAX_ERROR_CHARS,
    LedgerEntry,
    LedgerState,
    QueuedMessage,
    ReplyRecord,
    reply_key,
)

__all__ = [
    "MAX_ERROR_CHARS",
    "MAX_REPLIES",
    "TRANSITIONS",
    "LedgerEntry",
    "LedgerState",
    "MarkerKind",
    "MessageProcessingLedger",
    "QueuedMessage",
    "ReplyMarker",
    "ReplyRecord",
    "ack",
    "apply_marker",
    "begin",
    "check_text",
    "commit",
    "fail",
    "marker_for",
    "pending_order",
    "prepare",
    "reply_key",
]


_S = LedgerState

#: step -> (states it moves from, states in which it was already taken: a no-op).
#: Any other state raises LedgerTransitionError.
TRANSITIONS: dict[str, tuple[frozenset[LedgerState], frozenset[LedgerState]]] = {
    "begin": (frozenset({_S.RECEIVED, _S.PROCESSING}), frozenset()),
    "fail": (frozenset({_S.PROCESSING}), frozenset()),
    "prepare": (
        frozenset({_S.RECEIVED, _S.PROCESSING}),
        frozenset({_S.PREPARED, _S.COMMITTED, _S.ACKED}),
    ),
    "commit": (frozenset({_S.PREPARED}), frozenset({_S.COMMITTED, _S.ACKED})),
    "ack": (frozenset({_S.COMMITTED}), frozenset({_S.ACKED})),
}


# --- the transitions ----------------------------------------------------------------


def _step(op: str, entry: LedgerEntry) -> bool:
    """True: take the step; False: it was already taken. Raises when it is illegal."""
    moves_from, settled = TRANSITIONS[op]
    if entry.state in moves_from:
        return True
    if entry.state in settled:
        return False
    raise LedgerTransitionError(f"{entry.key}: cannot {op} an entry in state {entry.state}")


def _check_epoch(epoch: int) -> None:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise LedgerTransitionError(f"epoch must be a positive integer, not {epoch!r}")


def begin(entry: LedgerEntry, now_ms: float) -> LedgerEntry:
    """A run of the agent starts: received|processing -> processing, one more attempt."""
    _step("begin", entry)
    return replace(entry, state=_S.PROCESSING, attempts=entry.attempts + 1, updated_ms=now_ms)


def fail(entry: LedgerEntry, error: str, now_ms: float) -> LedgerEntry:
    """A run failed: record why (truncated) and stay in processing."""
    _step("fail", entry)
    return replace(entry, last_error=str(error)[:MAX_ERROR_CHARS], updated_ms=now_ms)


def prepare(entry: LedgerEntry, replies: Sequence[str], epoch: int, now_ms: float) -> LedgerEntry:
    """Fix the replies (texts and keys) under ``epoch``. Already prepared: unchanged, the
    first texts win. No replies at all: straight to reply-committed (nothing to send)."""
    if isinstance(replies, str) or not all(isinstance(t, str) for t in replies):
        raise LedgerTransitionError("replies must be a sequence of strings")
    if len(replies) > MAX_REPLIES:
        raise LedgerTransitionError(f"{len(replies)} replies; at most {MAX_REPLIES}")
    _check_epoch(epoch)
    if not _step("prepare", entry):
        return entry
    records = tuple(ReplyRecord(n, t, reply_key(entry.key, n)) for n, t in enumerate(replies))
    state = _S.PREPARED if records else _S.COMMITTED
    return replace(entry, state=state, replies=records, prepared_epoch=epoch, updated_ms=now_ms)


def commit(
    entry: LedgerEntry, index: int, message_id: int | None, epoch: int, now_ms: float
) -> LedgerEntry:
    """Reply ``index`` is delivered. All delivered: reply-committed. Already committed:
    unchanged (its first message id and epoch stay)."""
    _check_epoch(epoch)
    take = _step("commit", entry)
    if isinstance(index, bool) or not isinstance(index, int):
        raise LedgerTransitionError(f"{entry.key}: reply index {index!r} is not an integer")
    if not 0 <= index < len(entry.replies):
        raise LedgerTransitionError(
            f"{entry.key}: no reply {index} (the entry has {len(entry.replies)})"
        )
    if not take or entry.replies[index].committed:
        return entry
    done = replace(entry.replies[index], committed=True, message_id=message_id, epoch=epoch)
    replies = (*entry.replies[:index], done, *entry.replies[index + 1 :])
    state = _S.COMMITTED if all(r.committed for r in replies) else _S.PREPARED
    return replace(entry, state=state, replies=replies, updated_ms=now_ms)


def ack(entry: LedgerEntry, now_ms: float) -> LedgerEntry:
    """The message is done: reply-committed -> acked (the cursor may pass it)."""
    if not _step("ack", entry):
        return entry
    return replace(entry, state=_S.ACKED, updated_ms=now_ms)


def check_text(**values: object) -> None:
    """Refuse (LedgerTransitionError) a value that is not a string of valid Unicode (a
    lone surrogate cannot be stored): the queue's arguments are checked with this."""
    for name, value in values.items():
        if not isinstance(value, str):
            raise LedgerTransitionError(f"{name}: expected a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LedgerTransitionError(f"{name}: not valid Unicode") from None


def pending_order(entry: LedgerEntry) -> tuple[bool, int, int, str]:
    """The order of MessageProcessingLedger.pending(): update_id (None last), then
    message_id, then key."""
    return (entry.update_id is None, entry.update_id or 0, entry.message_id, entry.key)


# --- markers -----------------------------------------------------------------------


def marker_for(
    entry: LedgerEntry, kind: MarkerKind, epoch: int, index: int | None = None
) -> ReplyMarker:
    """The marker announcing that ``entry`` is recorded (received), its prepared
    replies, or its committed reply ``index``. Raises LedgerTransitionError when the
    entry has not got that far (or a received marker names a reply)."""
    _check_epoch(epoch)
    if kind == "received":
        if index is not None:
            raise LedgerTransitionError("a received marker names no reply")
    elif entry.state.rank < LedgerState.PREPARED.rank:
        raise LedgerTransitionError(f"{entry.key}: no replies prepared yet")
    sent: int | None = None
    if kind == "committed":
        if index is None or not 0 <= index < len(entry.replies):
            raise LedgerTransitionError(f"{entry.key}: no reply {index}")
        if not entry.replies[index].committed:
            raise LedgerTransitionError(f"{entry.key}: reply {index} is not committed")
        sent = entry.replies[index].message_id
    elif index is not None:
        raise LedgerTransitionError("a prepared marker names no reply")
    return ReplyMarker(
        kind=kind,
        key=entry.key,
        channel=entry.channel,
        topic=entry.topic,
        chat_id=entry.chat_id,
        thread_id=entry.thread_id,
        message_id=entry.message_id,
        update_id=entry.update_id,
        text=entry.text,
        sender=entry.sender,
        epoch=epoch,
        replies=() if kind == "received" else tuple(r.text for r in entry.replies),
        index=index,
        sent_message_id=sent,
        message_kind=entry.kind,
    )


def apply_marker(entry: LedgerEntry | None, marker: ReplyMarker, now_ms: float) -> LedgerEntry:
    """The entry after ``marker``: created if None (prepared, or with the committed
    reply), otherwise only moved forward. If the entry was prepared with other texts,
    its texts win and the marker's committed index is still applied (when the entry has
    such a reply). An acked entry is unchanged. Another key: LedgerTransitionError."""
    if entry is None:
        entry = LedgerEntry(
            key=marker.key,
            channel=marker.channel,
            topic=marker.topic,
            chat_id=marker.chat_id,
            thread_id=marker.thread_id,
            message_id=marker.message_id,
            update_id=marker.update_id,
            text=marker.text,
            sender=marker.sender,
            state=LedgerState.RECEIVED,
            received_ms=now_ms,
            updated_ms=now_ms,
            kind=marker.message_kind,
        )
    elif entry.key != marker.key:
        raise LedgerTransitionError(f"marker for {marker.key} applied to {entry.key}")
    if entry.done:
        return entry
    if marker.kind == "received":
        return entry  # recorded: what it knows of its replies stays
    if entry.state.rank < LedgerState.PREPARED.rank:
        entry = prepare(entry, marker.replies, marker.epoch, now_ms)
    if marker.index is not None and marker.index < len(entry.replies):
        entry = commit(entry, marker.index, marker.sent_message_id, marker.epoch, now_ms)
    return entry


# --- the port -----------------------------------------------------------------------


class MessageProcessingLedger(Protocol):
    """The ledger port. Adapters: SqliteLedger (real) and MemoryLedger (the twin).

    Atomicity: each method is one durable transaction. When it returns, the change is
    complete and survives kill -9 (and power loss, for SqliteLedger); when it raises,
    nothing changed. Transitions apply the pure functions of this module.

    Errors: LedgerError when the store cannot be read or written (LedgerCorrupt when its
    contents are not a ledger); LedgerTransitionError for our own misuse (an illegal
    transition: nothing changed); UnknownEntry for a key the ledger does not hold.
    After close() every method raises LedgerError.
    """

    def record(self, msg: InboundMessage, now_ms: float) -> tuple[LedgerEntry, bool]:
        """Record an inbound message (received). Idempotent on ``msg.key``: a message
        recorded already (in any state) is returned as it is, with False."""
        ...

    def get(self, key: str) -> LedgerEntry | None: ...

    def begin(self, key: str, now_ms: float) -> LedgerEntry: ...

    def fail(self, key: str, error: str, now_ms: float) -> LedgerEntry: ...

    def prepare(
        self, key: str, replies: Sequence[str], epoch: int, now_ms: float
    ) -> LedgerEntry: ...

    def commit(
        self, key: str, index: int, message_id: int | None, epoch: int, now_ms: float
    ) -> LedgerEntry: ...

    def ack(self, key: str, now_ms: float) -> LedgerEntry: ...

    def apply_marker(self, marker: ReplyMarker, now_ms: float) -> LedgerEntry:
        """Apply a holder's marker (creating the entry if needed); see apply_marker."""
        ...

    def pending(self) -> list[LedgerEntry]:
        """Every entry not acked, in ``pending_order``."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """The calls this thread makes in the block are one transaction: every change
        durable when it ends, none when it raises (the delivery actor's group commit)."""
        ...

    def prune(self, now_ms: float, max_age_ms: float, max_entries: int) -> int:
        """Delete acked entries last updated more than ``max_age_ms`` ago, then the oldest
        acked ones (by updated_ms) while more than ``max_entries`` entries remain. Never
        deletes an entry that is not acked. Returns how many were deleted."""
        ...

    def counts(self) -> dict[str, int]:
        """Entries per state value, every state present (0 when none)."""
        ...

    def queue_put(self, item_id: str, topic: str, text: str, now_ms: float) -> bool:
        """Queue a user message durably; False (and nothing changed) if the id is queued.
        Strings that are not valid Unicode: LedgerTransitionError (see check_text)."""
        ...

    def queue_items(self) -> list[QueuedMessage]:
        """The queued messages, oldest first (queued_ms, then order of arrival)."""
        ...

    def queue_remove(self, item_id: str) -> None:
        """Drop a queued message; an unknown id is not an error."""
        ...

    def close(self) -> None: ...
