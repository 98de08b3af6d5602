"""The values of the MessageProcessingLedger (sans-IO): states, reply records, entries,
queued user messages, and the JSON form entries are stored in. The rules that move an
entry live in baton.core.ledger (which re-exports these names).

Invariants:
- Values are frozen: a change is a new value, made only by the rules of core.ledger.
- ``LedgerState.rank`` orders the lifecycle: received < processing < reply-prepared <
  reply-committed < acked.
- ``reply_key(ledger_key, index)`` is the same on every machine: the sha256 hex of
  ``f"{ledger_key}\\n{index}"``.
- ``LedgerEntry.from_json(entry.to_json()) == entry``; a stored document of another
  shape raises LedgerCorrupt (it is our own data, so a bad shape means corruption).
  The one field that may be missing is ``kind``: documents written before messages had
  kinds have none, and they were all text messages, so they read as "text".
- ``LedgerEntry.kind`` is one of baton.core.inbound.MESSAGE_KINDS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from baton.core.errors import LedgerCorrupt
from baton.core.inbound import MESSAGE_KINDS, InboundMessage

MAX_ERROR_CHARS = 1000  # last_error is truncated to this (core.ledger.fail)


class LedgerState(StrEnum):
    RECEIVED = "received"
    PROCESSING = "processing"
    PREPARED = "reply-prepared"
    COMMITTED = "reply-committed"
    ACKED = "acked"

    @property
    def rank(self) -> int:
        """The position in the lifecycle; it only ever grows."""
        return _RANK[self]


_RANK: dict[LedgerState, int] = {state: n for n, state in enumerate(LedgerState)}


def reply_key(ledger_key: str, index: int) -> str:
    """The key of reply ``index`` of the message ``ledger_key``: the same on every machine."""
    return hashlib.sha256(f"{ledger_key}\n{index}".encode()).hexdigest()


@dataclass(frozen=True)
class ReplyRecord:
    index: int
    text: str
    reply_key: str
    committed: bool = False
    message_id: int | None = None  # the delivered message, when the sink said
    epoch: int | None = None  # the epoch it was delivered under, when committed

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": self.text,
            "reply_key": self.reply_key,
            "committed": self.committed,
            "message_id": self.message_id,
            "epoch": self.epoch,
        }

    @classmethod
    def from_json(cls, obj: object) -> ReplyRecord:
        """Decode a stored reply; a bad shape raises LedgerCorrupt."""
        doc = _doc(obj, _REPLY_FIELDS, "reply")
        return cls(
            index=_int(doc, "index"),
            text=_str(doc, "text"),
            reply_key=_str(doc, "reply_key"),
            committed=_bool(doc, "committed"),
            message_id=_opt_int(doc, "message_id"),
            epoch=_opt_int(doc, "epoch"),
        )


@dataclass(frozen=True)
class LedgerEntry:
    key: str
    channel: str
    topic: str
    chat_id: int
    thread_id: int
    message_id: int
    update_id: int | None
    text: str
    sender: str
    state: LedgerState
    attempts: int = 0
    last_error: str | None = None
    replies: tuple[ReplyRecord, ...] = ()
    prepared_epoch: int | None = None
    received_ms: float = 0.0
    updated_ms: float = 0.0
    kind: str = "text"  # one of MESSAGE_KINDS

    @classmethod
    def of(cls, msg: InboundMessage, now_ms: float) -> LedgerEntry:
        """A fresh entry (received) for an inbound message."""
        return cls(
            key=msg.key,
            channel=msg.channel,
            topic=msg.topic,
            chat_id=msg.chat_id,
            thread_id=msg.thread_id,
            message_id=msg.message_id,
            update_id=msg.update_id,
            text=msg.text,
            sender=msg.sender,
            state=LedgerState.RECEIVED,
            received_ms=now_ms,
            updated_ms=now_ms,
            kind=msg.kind,
        )

    @property
    def done(self) -> bool:
        return self.state is LedgerState.ACKED

    def uncommitted(self) -> tuple[ReplyRecord, ...]:
        """The prepared replies not yet known to be delivered, in order."""
        return tuple(r for r in self.replies if not r.committed)

    def to_json(self) -> dict[str, Any]:
        doc = {name: getattr(self, name) for name in _ENTRY_FIELDS}
        doc["state"] = self.state.value
        doc["replies"] = [r.to_json() for r in self.replies]
        return doc

    @classmethod
    def from_json(cls, obj: object) -> LedgerEntry:
        """Decode a stored entry; a bad shape raises LedgerCorrupt. A document without
        "kind" (written before messages had kinds) is a text message's."""
        if isinstance(obj, dict) and "kind" not in obj:
            obj = {**obj, "kind": "text"}
        doc = _doc(obj, _ENTRY_FIELDS, "entry")
        try:
            state = LedgerState(doc["state"])
        except ValueError:
            raise LedgerCorrupt(f"entry: unknown state {doc['state']!r}") from None
        replies = doc["replies"]
        if not isinstance(replies, list):
            raise LedgerCorrupt("entry: replies is not a list")
        return cls(
            key=_str(doc, "key"),
            channel=_str(doc, "channel"),
            topic=_str(doc, "topic"),
            chat_id=_int(doc, "chat_id"),
            thread_id=_int(doc, "thread_id"),
            message_id=_int(doc, "message_id"),
            update_id=_opt_int(doc, "update_id"),
            text=_str(doc, "text"),
            sender=_str(doc, "sender"),
            state=state,
            attempts=_int(doc, "attempts"),
            last_error=None if doc["last_error"] is None else _str(doc, "last_error"),
            replies=tuple(ReplyRecord.from_json(r) for r in replies),
            prepared_epoch=_opt_int(doc, "prepared_epoch"),
            received_ms=_num(doc, "received_ms"),
            updated_ms=_num(doc, "updated_ms"),
            kind=_message_kind(doc),
        )


_REPLY_FIELDS = ("index", "text", "reply_key", "committed", "message_id", "epoch")
_ENTRY_FIELDS = tuple(LedgerEntry.__dataclass_fields__)


@dataclass(frozen=True)
class QueuedMessage:
    """A user message waiting (durably) to be handed to the channel."""

    item_id: str
    topic: str
    text: str
    queued_ms: float


# --- decoding stored documents (our own data: a bad shape means corruption) ----------


def _doc(obj: object, fields: Sequence[str], what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict) or set(obj) != set(fields):
        raise LedgerCorrupt(f"{what}: expected an object with the fields {sorted(fields)}")
    return obj


def _str(doc: Mapping[str, Any], name: str) -> str:
    value = doc[name]
    if not isinstance(value, str):
        raise LedgerCorrupt(f"{name}: expected a string")
    return value


def _int(doc: Mapping[str, Any], name: str) -> int:
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise LedgerCorrupt(f"{name}: expected an integer")
    return value


def _opt_int(doc: Mapping[str, Any], name: str) -> int | None:
    return None if doc[name] is None else _int(doc, name)


def _bool(doc: Mapping[str, Any], name: str) -> bool:
    value = doc[name]
    if not isinstance(value, bool):
        raise LedgerCorrupt(f"{name}: expected a boolean")
    return value


def _message_kind(doc: Mapping[str, Any]) -> str:
    kind = _str(doc, "kind")
    if kind not in MESSAGE_KINDS:
        raise LedgerCorrupt(f"entry: unknown kind {kind!r}")
    return kind


def _num(doc: Mapping[str, Any], name: str) -> float:
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LedgerCorrupt(f"{name}: expected a number")
    return float(value)
