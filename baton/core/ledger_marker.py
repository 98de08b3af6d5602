"""Reply markers: the holder's word to the standbys about a message's replies (sans-IO).

A marker is ``received`` (message K is recorded, not yet answered: the channel cursor
may pass it once the standbys in sync hold it), ``prepared`` (these are the replies of
message K, fixed under epoch E) or ``committed`` (reply I of message K was delivered
under epoch E). It carries the whole
message, so a standby that never saw the message can create its entry; it carries no
reply keys, because every machine derives them from the ledger key. Building a marker
from an entry (marker_for) and applying one (apply_marker) are rules of the ledger and
live in baton.core.ledger, which also re-exports ReplyMarker; this module is the value
and its strict decoding only, and depends on nothing else of the ledger.

Invariants:
- A ReplyMarker that exists is well-formed: field types (no bool for an int), ids not
  negative (except chat_id: Telegram group chats have negative ids), epoch >= 1, at most
  MAX_REPLIES replies, strings that are valid Unicode (no lone surrogates),
  ``key == f"{channel}:{topic}:{message_id}"`` and ``topic == f"{chat_id}/{thread_id}"``,
  a committed marker names a reply it carries, a prepared one names none, a received
  one carries no reply and names none,
  ``message_kind`` is one of baton.core.inbound.MESSAGE_KINDS.
- Decoding a peer's dict (from_json) yields one or raises MarkerRefused; unknown or
  missing fields are refused, never ignored or defaulted, with one exception:
  ``message_kind`` (what the message is; ``kind`` says what the marker is) may be
  absent and then means "text". to_json leaves it out for a text message, so a marker
  of a text message is the same JSON (and signs the same bytes) as before messages had
  kinds, and peers of either version read each other's text markers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Literal

from baton.core.errors import MarkerRefused
from baton.core.inbound import MESSAGE_KINDS

# Reply parts per message (a ledger entry's, a marker's): an agent gives at most 10
# replies of at most 16000 characters, and each is split into parts of at most 4096
# UTF-16 units (baton.core.delivery.split_reply): at most 8 parts a reply.
MAX_REPLIES = 100
MAX_ID = 2**53  # JSON-safe integers; an id beyond this is not from a real channel
_CHANNEL_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")

MarkerKind = Literal["received", "prepared", "committed"]
MARKER_KINDS: tuple[MarkerKind, ...] = ("received", "prepared", "committed")


@dataclass(frozen=True)
class ReplyMarker:
    kind: MarkerKind
    key: str
    channel: str
    topic: str
    chat_id: int
    thread_id: int
    message_id: int
    update_id: int | None
    text: str
    sender: str
    epoch: int
    replies: tuple[str, ...]
    index: int | None = None  # committed: the reply delivered
    sent_message_id: int | None = None  # committed: the delivered message, when known
    message_kind: str = "text"  # the message's kind (MESSAGE_KINDS); absent in JSON: text

    def __post_init__(self) -> None:
        _check(self)

    def to_json(self) -> dict[str, Any]:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["replies"] = list(self.replies)
        if self.message_kind == "text":
            del doc["message_kind"]  # the JSON (and signed bytes) of markers before kinds
        return doc

    @classmethod
    def from_json(cls, obj: object) -> ReplyMarker:
        """Decode a peer's marker strictly: exactly the fields of to_json (message_kind
        may be absent: "text"), checked."""
        if not isinstance(obj, dict):
            raise MarkerRefused("marker: expected an object")
        missing, unknown = _REQUIRED - set(obj), set(obj) - _FIELDS
        if missing or unknown:
            raise MarkerRefused(
                f"marker: missing fields {sorted(missing)}, unknown {sorted(map(str, unknown))}"
            )
        if not isinstance(obj["replies"], list):
            raise MarkerRefused("replies: expected a list")
        return cls(**{**obj, "replies": tuple(obj["replies"])})


_FIELDS = frozenset(f.name for f in fields(ReplyMarker))
_REQUIRED = _FIELDS - {"message_kind"}


def _check(m: ReplyMarker) -> None:
    if m.kind not in MARKER_KINDS:
        raise MarkerRefused(f"kind: expected one of {', '.join(MARKER_KINDS)}")
    for name in ("key", "channel", "topic", "text", "sender"):
        _text(name, getattr(m, name))
    if not isinstance(m.message_kind, str) or m.message_kind not in MESSAGE_KINDS:
        raise MarkerRefused(f"message_kind: expected one of {', '.join(MESSAGE_KINDS)}")
    if not _CHANNEL_RE.fullmatch(m.channel):
        raise MarkerRefused("channel: expected a channel name")
    _int("chat_id", m.chat_id, -MAX_ID)
    for name in ("thread_id", "message_id"):
        _int(name, getattr(m, name), 0)
    _int("epoch", m.epoch, 1)
    for name in ("update_id", "index", "sent_message_id"):
        if getattr(m, name) is not None:
            _int(name, getattr(m, name), 0)
    if not isinstance(m.replies, tuple) or len(m.replies) > MAX_REPLIES:
        raise MarkerRefused(f"replies: expected at most {MAX_REPLIES} texts")
    for text in m.replies:
        _text("replies", text)
    if m.topic != f"{m.chat_id}/{m.thread_id}":
        raise MarkerRefused("topic: does not match chat_id and thread_id")
    if m.key != f"{m.channel}:{m.topic}:{m.message_id}":
        raise MarkerRefused("key: does not match channel, topic and message_id")
    if m.kind == "committed" and (m.index is None or m.index >= len(m.replies)):
        raise MarkerRefused("index: a committed marker names one of its replies")
    if m.kind != "committed" and (m.index is not None or m.sent_message_id is not None):
        raise MarkerRefused(f"index: a {m.kind} marker names no reply")
    if m.kind == "received" and m.replies:
        raise MarkerRefused("replies: a received marker carries none")


def _text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise MarkerRefused(f"{name}: expected a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MarkerRefused(f"{name}: not valid Unicode") from None


def _int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_ID:
        raise MarkerRefused(f"{name}: expected an integer in [{low}, {MAX_ID}]")
