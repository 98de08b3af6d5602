"""The one versioned envelope every machine-to-machine message travels in.

Theory of operation: an envelope is ``{v, type, from, to, id, epoch, body}``
encoded as compact UTF-8 JSON. This module is bytes in, values out: no I/O,
no clock, no randomness of its own (``new_message_id`` takes an ``rng``).

Invariants:
- ``decode`` either returns a fully valid ``Envelope`` or raises a typed
  ``FrameError`` (FrameTooLarge, MalformedFrame, UnknownVersion, UnknownType);
  it never returns a half-checked value and never raises anything else.
- The size limit is checked before any parsing, so a peer cannot make us parse
  more than ``max_bytes``.
- Every ``Envelope`` that exists is valid: construction checks the same rules
  as ``decode`` (a violation there is our own misuse and raises ValueError).
- ``decode(encode(e)) == e`` for every envelope ``e`` (written at its own version).
- ``decode`` reads every protocol version this build speaks (PROTOCOL_MIN to
  PROTOCOL_VERSION) and no other (UnknownVersion).
- The encoding is canonical (sorted keys, no whitespace), so equal envelopes
  encode to equal bytes.
- ``MESSAGE_TYPES`` is the single schema table: each type lists its body
  fields exactly, and ``OPTIONAL_FIELDS`` those it may carry besides; missing,
  extra or wrongly typed fields are malformed.
  ``bool`` is never accepted where ``int`` is expected.
- Never pickle: JSON only; duplicate keys and NaN/Infinity are refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from baton import PROTOCOL_MIN, PROTOCOL_VERSION
from baton.core import safejson
from baton.core.errors import (
    FrameError,
    FrameTooLarge,
    MalformedFrame,
    UnknownType,
    UnknownVersion,
)

#: Body schema of every message type: field name -> required Python type.
#: Supported field types: str, int (never bool), bool, float (int accepted),
#: list and dict (contents unchecked here). Later issues add types here.
MESSAGE_TYPES: dict[str, dict[str, type]] = {
    "ping": {},
    "pong": {"ping_id": str},
    "roster": {"machines": list},
    "announce": {"announcement": dict},  # a machine's own endpoints (core.announce)
    "seen": {"address": str},  # the address the recipient's connections come from
    "lease": {"record": dict, "token": str},  # token: the store's, "" if unknown
    "marker": {"marker": dict, "signature": str},  # a signed ReplyMarker (hex signature)
    "marker_ack": {"id": str},  # a standby durably recorded that marker (core.replicas)
    "sync_request": {"keys": list, "page": int, "more": bool},  # a standby out of sync
    # asks to join, with page 0, 1, ... of its unfinished keys (more: further pages follow)
    "user_message": {"item_id": str, "topic": str, "text": str},  # a standby forwards
    "user_message_ack": {"item_id": str, "message_id": int},  # the holder posted it
    "tail": {"frames": list, "heads": dict},  # live-tail frames, sealed to the recipient
    "tail_ack": {"have": dict, "pull": bool},  # how far a standby's copy matches
    "handoff_request": {"handoff_id": str},  # the target asks the holder to begin
    "handoff_begin": {"handoff_id": str, "heads": list, "position": int},
    "handoff_ack": {"handoff_id": str, "heads": list, "position": int, "signature": str},
    "handoff_abort": {"handoff_id": str, "reason": str},
    "secrets_have": {"have": dict, "reply": bool},  # each secret's version, no value
    "secret": {"box": str},  # one secret, sealed to the recipient (wire.secret_transport)
    "pool_state": {"state": dict},  # the pool's state, from the holder (wire.pool_transport)
    "pool_run": {"run": list, "box": str},  # the holder asks a machine to run a message
    "pool_result": {"run": list, "box": str},  # its replies, sealed to the holder
    "pool_ask": {"id": str, "op": str, "args": dict},  # a pool question, to the holder
    "pool_answer": {"id": str, "answer": dict},  # its answer (wire.pool_transport)
    "pool_release": {"topic": str},  # the holder asks a topic's old machine for its state
    "pool_released": {"topic": str},  # it queued its changes (StateSync)
    "pool_hello": {
        "boot": str,
        "agent": bool,
    },  # a machine's runner, this run of its process, to the holder
    "features": {"flags": dict},  # the signed component flags, from the holder (core.features)
}

#: Fields a body may carry besides its schema's: a newer machine's additions, which an
#: older one's messages lack (a ping says which baton sends it: baton.core.versions).
OPTIONAL_FIELDS: dict[str, dict[str, type]] = {
    "ping": {"version": str, "protocols": list},
}

#: Epochs are stored as signed 64-bit integers (SQLite, other languages).
MAX_EPOCH = 2**63 - 1

MACHINE_ID_RE = re.compile(r"m_[a-z2-7]{16}")
MESSAGE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

_TOP_LEVEL_KEYS = frozenset({"v", "type", "from", "to", "id", "epoch", "body"})


@dataclass(frozen=True)
class Envelope:
    """One message between machines. ``sender`` is the wire field ``from``.

    ``body`` is stored as a read-only mapping (a shallow copy of what was
    passed in); values inside it are plain JSON values.
    """

    v: int
    type: str
    sender: str
    to: str
    id: str
    epoch: int
    body: Mapping[str, Any]

    def __post_init__(self) -> None:
        try:
            _check_fields(
                self.v, self.type, self.sender, self.to, self.id, epoch=self.epoch, body=self.body
            )
        except FrameError as exc:
            raise ValueError(f"invalid envelope: {exc.detail}") from exc
        if not isinstance(self.body, MappingProxyType):
            object.__setattr__(self, "body", MappingProxyType(dict(self.body)))


def is_machine_id(value: object) -> bool:
    """True if ``value`` is a well-formed machine id (``m_`` + 16 base32 chars)."""
    return isinstance(value, str) and MACHINE_ID_RE.fullmatch(value) is not None


def new_message_id(rng: Callable[[int], bytes]) -> str:
    """A fresh message id: 16 hex characters from 8 bytes of ``rng``."""
    raw = rng(8)
    if len(raw) != 8:
        raise ValueError(f"rng returned {len(raw)} bytes, expected 8")
    return raw.hex()


def make_envelope(
    type: str,
    sender: str,
    to: str,
    body: Mapping[str, Any],
    msg_id: str,
    *,
    epoch: int = 0,
) -> Envelope:
    """Build a valid envelope of the current protocol version (ValueError if not)."""
    return Envelope(
        v=PROTOCOL_VERSION, type=type, sender=sender, to=to, id=msg_id, epoch=epoch, body=body
    )


def encode(env: Envelope, v: int | None = None) -> bytes:
    """Compact, canonical UTF-8 JSON of ``env``, written at protocol version ``v`` (None:
    its own; a transport writes at the mesh's, baton.core.versions.write_at)."""
    obj = {
        "v": env.v if v is None else v,
        "type": env.type,
        "from": env.sender,
        "to": env.to,
        "id": env.id,
        "epoch": env.epoch,
        "body": dict(env.body),
    }
    text = json.dumps(
        obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def decode(data: bytes, max_bytes: int) -> Envelope:
    """Parse and check one frame from a peer.

    Raises FrameTooLarge (``len(data) > max_bytes``, before parsing),
    MalformedFrame, UnknownVersion or UnknownType. Nothing else escapes.
    """
    if len(data) > max_bytes:
        raise FrameTooLarge(f"frame of {len(data)} bytes exceeds {max_bytes}")
    obj = _parse_json(data)
    if not isinstance(obj, dict):
        raise MalformedFrame(f"top level is a JSON {type(obj).__name__}, not an object")
    v = obj.get("v")
    if not _is_int(v):
        raise MalformedFrame("'v' is missing or not an integer")
    v = _check_version(v)
    keys = set(obj)
    if keys != _TOP_LEVEL_KEYS:
        missing = sorted(_TOP_LEVEL_KEYS - keys)
        extra = sorted(keys - _TOP_LEVEL_KEYS)
        raise MalformedFrame(f"top-level keys: missing {missing}, extra {extra}")
    fields = (v, obj["type"], obj["from"], obj["to"], obj["id"])
    epoch, body = obj["epoch"], obj["body"]
    _check_fields(*fields, epoch=epoch, body=body)
    return Envelope(*fields, epoch, body)


# --- checks ------------------------------------------------------------------


def _parse_json(data: bytes) -> object:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedFrame(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        obj = safejson.loads(
            text, object_pairs_hook=_object_no_duplicates, parse_constant=_no_constant
        )
        if "\\u" in text:
            # An escape can smuggle in a lone surrogate, which no UTF-8 encoder
            # accepts: refuse it here rather than fail when we re-encode later.
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except ValueError as exc:
        # JSONDecodeError and UnicodeEncodeError are ValueErrors; so are our
        # hooks' refusals and CPython's limit on very long integer literals.
        raise MalformedFrame(f"not valid JSON: {_short(exc)}") from None
    return obj


def _object_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key in object")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _check_version(v: object) -> int:
    """A version this build speaks, or UnknownVersion: never read as another."""
    if not isinstance(v, int) or isinstance(v, bool) or not PROTOCOL_MIN <= v <= PROTOCOL_VERSION:
        speaks = f"{PROTOCOL_MIN}-{PROTOCOL_VERSION}"
        raise UnknownVersion(f"protocol version {v!r:.20} (this node speaks {speaks})")
    return v


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_fields(
    v: object,
    type_: object,
    sender: object,
    to: object,
    msg_id: object,
    *,
    epoch: object,
    body: object,
) -> None:
    """Raise the right FrameError if any field is unacceptable."""
    if not _is_int(v):
        raise MalformedFrame("'v' is not an integer")
    _check_version(v)
    if not isinstance(type_, str):
        raise MalformedFrame("'type' is not a string")
    if not is_machine_id(sender):
        raise MalformedFrame(f"'from' is not a machine id: {_short_repr(sender)}")
    if not is_machine_id(to):
        raise MalformedFrame(f"'to' is not a machine id: {_short_repr(to)}")
    if not isinstance(msg_id, str) or MESSAGE_ID_RE.fullmatch(msg_id) is None:
        raise MalformedFrame(f"'id' is not 1..64 chars of [A-Za-z0-9_-]: {_short_repr(msg_id)}")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCH:
        raise MalformedFrame(f"'epoch' is not an integer in 0..2**63-1: {_short_repr(epoch)}")
    schema = MESSAGE_TYPES.get(type_)
    if schema is None:
        raise UnknownType(f"message type {_short_repr(type_)}")
    if not isinstance(body, Mapping):
        raise MalformedFrame("'body' is not an object")
    _check_body(type_, schema, body)


def _check_body(type_: str, schema: dict[str, type], body: Mapping[Any, Any]) -> None:
    keys, optional = set(body), OPTIONAL_FIELDS.get(type_, {})
    if not set(schema) <= keys <= set(schema) | set(optional):
        missing = sorted(set(schema) - keys)
        extra = sorted(str(k) for k in keys - set(schema) - set(optional))
        raise MalformedFrame(f"{type_} body fields: missing {missing}, extra {extra}")
    for name, expected in (*schema.items(), *optional.items()):
        if name in body and not _matches(body[name], expected):
            raise MalformedFrame(f"{type_}.{name} is not a {expected.__name__}")


def _matches(value: object, expected: type) -> bool:
    if expected is int:
        return _is_int(value)
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return math.isfinite(value)
    return isinstance(value, expected)


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
