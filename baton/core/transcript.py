"""The durable per-topic transcript (sans-IO): turns, their strict encoding, the rule
that admits a holder's turn on a standby, and the TranscriptStore port.

Theory of operation. Each topic keeps its turns (one inbound message and the replies
to it) in a transcript numbered 1, 2, 3, ... by ``seq``. Only the holder makes turns:
``append`` gives the next number and is idempotent by ledger key, so a message resumed
after a crash or a takeover never gets a second turn. The holder streams its turns to the
standbys (the live tail, baton.core.live_tail), which keep them sealed in their
LiveTailBuffer; on takeover the buffer is replayed into this store with ``put``, which
stores a turn only when it extends the copy by exactly one. ``decide_put`` is that
rule: a turn already held with equal content is a DUPLICATE, a turn beyond the next is
a GAP, a turn that disagrees with what is held is a CONFLICT (never overwritten by
put). Nothing is stored except on ADDED. Where a machine's own copy parted from the
chain the holder streamed (it held the lease earlier and made turns nobody received),
the replay first drops its turns from there with ``truncate``: the chain wins.

Invariants:
- A TranscriptTurn that exists is well-formed: field types (no bool for an int), seq in
  [1, MAX_ID], message_id in [0, MAX_ID], non-empty topic and ledger_key, at most
  MAX_REPLIES replies, every string valid Unicode (no lone surrogates), at_ms a finite
  number (held as a float). Otherwise it raises TranscriptRefused.
- ``TranscriptTurn.from_json(turn.to_json()) == turn``; any other shape (unknown or
  missing fields, wrong types) raises TranscriptRefused, never defaulted or ignored.
- In every store a topic's seqs are exactly 1..last_seq(topic), and a ledger key names
  at most one turn of a topic. Stored turns are never changed; only ``truncate``
  removes them (a suffix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, Protocol

from baton.core.errors import TranscriptError, TranscriptRefused
from baton.core.ledger_marker import MAX_ID, MAX_REPLIES


@dataclass(frozen=True)
class TranscriptTurn:
    """Turn ``seq`` of ``topic``: the inbound message ``ledger_key`` and its replies."""

    topic: str
    seq: int
    ledger_key: str
    message_id: int
    text: str
    replies: tuple[str, ...]
    at_ms: float

    def __post_init__(self) -> None:
        for name in ("topic", "ledger_key"):
            if not _text(name, getattr(self, name)):
                raise TranscriptRefused(f"{name}: expected a non-empty string")
        _text("text", self.text)
        _int("seq", self.seq, 1)
        _int("message_id", self.message_id, 0)
        if not isinstance(self.replies, tuple) or len(self.replies) > MAX_REPLIES:
            raise TranscriptRefused(f"replies: expected at most {MAX_REPLIES} texts")
        for reply in self.replies:
            _text("replies", reply)
        at = self.at_ms
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise TranscriptRefused("at_ms: expected a finite number")
        try:
            at = float(at)  # an integer past a float's range overflows
        except OverflowError:
            raise TranscriptRefused("at_ms: expected a finite number") from None
        if not math.isfinite(at):
            raise TranscriptRefused("at_ms: expected a finite number")
        object.__setattr__(self, "at_ms", at)

    def to_json(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["replies"] = list(self.replies)
        return doc

    @classmethod
    def from_json(cls, obj: object) -> TranscriptTurn:
        """Decode a turn strictly: exactly the fields of to_json, checked."""
        if not isinstance(obj, dict):
            raise TranscriptRefused("turn: expected an object")
        missing, unknown = _FIELDS - set(obj), set(obj) - _FIELDS
        if missing or unknown:
            raise TranscriptRefused(
                f"turn: missing fields {sorted(missing)}, unknown {sorted(map(str, unknown))}"
            )
        if not isinstance(obj["replies"], list):
            raise TranscriptRefused("replies: expected a list")
        return cls(**{**obj, "replies": tuple(obj["replies"])})


_FIELDS = frozenset(f.name for f in fields(TranscriptTurn))


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TranscriptRefused(f"{name}: expected a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise TranscriptRefused(f"{name}: not valid Unicode") from None
    return value


def _int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_ID:
        raise TranscriptRefused(f"{name}: expected an integer in [{low}, {MAX_ID}]")


class PutResult(StrEnum):
    """What ``put`` did with a holder's turn. Only ADDED stored anything."""

    ADDED = "added"  # seq was last + 1: stored
    DUPLICATE = "duplicate"  # the same turn is held already: nothing to do
    GAP = "gap"  # seq > last + 1: not stored; re-request from last + 1
    CONFLICT = "conflict"  # disagrees with a held turn: not stored, never overwritten


def decide_put(
    last: TranscriptTurn | None,
    held: TranscriptTurn | None,
    turn: TranscriptTurn,
    keyed: TranscriptTurn | None = None,
) -> PutResult:
    """Whether a standby stores ``turn``. ``last`` is its topic's newest turn, ``held``
    the turn it holds at ``turn.seq`` and ``keyed`` the turn of the topic it holds under
    ``turn.ledger_key`` (each None when there is none). A seq at or below ``last`` that
    is not held, or a new seq for a ledger key held under another, is a CONFLICT.
    Arguments that do not describe one topic are our own misuse: TranscriptError."""
    for name, other in (("last", last), ("held", held), ("keyed", keyed)):
        if other is not None and other.topic != turn.topic:
            raise TranscriptError(f"decide_put: {name} is a turn of another topic")
    if held is not None and held.seq != turn.seq:
        raise TranscriptError("decide_put: held is a turn of another seq")
    if keyed is not None and keyed.ledger_key != turn.ledger_key:
        raise TranscriptError("decide_put: keyed is a turn of another ledger key")
    if held is not None:
        return PutResult.DUPLICATE if held == turn else PutResult.CONFLICT
    last_seq = 0 if last is None else last.seq
    if turn.seq <= last_seq or keyed is not None:
        return PutResult.CONFLICT
    return PutResult.ADDED if turn.seq == last_seq + 1 else PutResult.GAP


class TranscriptStore(Protocol):
    """The transcript port. Adapters: SqliteTranscriptStore (data/transcripts.sqlite)
    and MemoryTranscriptStore (the twin); both pass tests/contract/test_transcript.py.

    Atomicity: each method is one durable transaction. When it returns, its change is
    complete and survives kill -9 (and power loss, for SqliteTranscriptStore); when it
    raises, nothing changed. Reads see one consistent state.

    Errors: TranscriptError when the store cannot be read or written (TranscriptCorrupt
    when its file or contents are not a transcript store; the file is left untouched);
    TranscriptRefused when append's arguments do not make a well-formed turn (nothing
    stored). After close() every method but close raises TranscriptError.
    """

    def append(
        self,
        topic: str,
        ledger_key: str,
        message_id: int,
        text: str,
        *,
        replies: tuple[str, ...],
        at_ms: float,
    ) -> TranscriptTurn:
        """The holder adds a turn with seq = last_seq(topic) + 1. Idempotent by
        ``ledger_key`` within the topic: a key held already returns its turn as it is
        (no new seq, whatever the other arguments)."""
        ...

    def put(self, turn: TranscriptTurn) -> PutResult:
        """A standby stores a holder's turn when decide_put says ADDED (seq is exactly
        last_seq + 1); otherwise nothing changes and the result says why."""
        ...

    def turns(self, topic: str, after_seq: int, limit: int) -> list[TranscriptTurn]:
        """Up to ``limit`` turns of ``topic`` with seq > ``after_seq``, ascending."""
        ...

    def history(self, topic: str, limit: int) -> list[TranscriptTurn]:
        """The newest ``limit`` turns of ``topic``, oldest first (the agent's history)."""
        ...

    def truncate(self, topic: str, after_seq: int) -> int:
        """Remove the turns of ``topic`` with seq > ``after_seq``; how many went."""
        ...

    def last_seqs(self) -> dict[str, int]:
        """Every topic that has a turn, with its last seq."""
        ...

    def last_seq(self, topic: str) -> int:
        """The last seq of ``topic``; 0 when it has no turn."""
        ...

    def close(self) -> None:
        """Release the store; calling it again does nothing."""
        ...
