"""The envelope codec: round trip, and each refusal raises its typed error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton import PROTOCOL_VERSION
from baton.core.errors import (
    FrameTooLarge,
    MalformedFrame,
    UnknownType,
    UnknownVersion,
)
from baton.wire.envelope import (
    MAX_EPOCH,
    MESSAGE_TYPES,
    Envelope,
    decode,
    encode,
    make_envelope,
    new_message_id,
)

A = "m_aaaaaaaaaaaaaaaa"
B = "m_bbbbbbbbbbbbbbbb"
LIMIT = 64 * 1024

machine_ids = st.from_regex(r"m_[a-z2-7]{16}", fullmatch=True)
message_ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
_FIELD_VALUES: dict[type, st.SearchStrategy[Any]] = {
    str: st.text(max_size=50),
    int: st.integers(),
    bool: st.booleans(),
    float: st.floats(allow_nan=False, allow_infinity=False),
    list: st.lists(st.dictionaries(st.text(max_size=10), st.text(max_size=10)), max_size=3),
    dict: st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=4),
}


def _bodies(type_: str) -> st.SearchStrategy[dict[str, Any]]:
    schema = MESSAGE_TYPES[type_]
    return st.fixed_dictionaries({name: _FIELD_VALUES[t] for name, t in schema.items()})


envelopes = st.sampled_from(sorted(MESSAGE_TYPES)).flatmap(
    lambda type_: st.builds(
        make_envelope,
        type=st.just(type_),
        sender=machine_ids,
        to=machine_ids,
        body=_bodies(type_),
        msg_id=message_ids,
        epoch=st.integers(min_value=0, max_value=MAX_EPOCH),
    )
)


@given(envelopes)
def test_round_trip(env: Envelope) -> None:
    data = encode(env)
    assert decode(data, max_bytes=len(data)) == env
    assert encode(decode(data, LIMIT)) == data


def _raw(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "type": "pong",
        "from": A,
        "to": B,
        "id": "abc123",
        "epoch": 7,
        "body": {"ping_id": "p1"},
    }
    for key, value in changes.items():
        if value is _DELETE:
            del obj[key]
        else:
            obj[key] = value
    return obj


_DELETE = object()


def _bytes(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_valid_raw_frame_decodes() -> None:
    env = decode(_bytes(_raw()), LIMIT)
    assert env.sender == A and env.to == B and env.body == {"ping_id": "p1"}


REFUSALS: list[tuple[str, bytes, type[Exception]]] = [
    ("non-json", b"hello, world", MalformedFrame),
    ("non-utf8", b'{"v":1,"type":"\xff"}', MalformedFrame),
    ("json array", _bytes([1, 2, 3]), MalformedFrame),
    ("json string", _bytes("ping"), MalformedFrame),
    ("empty", b"", MalformedFrame),
    ("missing key", _bytes(_raw(epoch=_DELETE)), MalformedFrame),
    ("missing v", _bytes(_raw(v=_DELETE)), MalformedFrame),
    ("extra key", _bytes(_raw(extra=1)), MalformedFrame),
    ("duplicate key", b'{"v":1,"v":1}', MalformedFrame),
    ("bool as epoch", _bytes(_raw(epoch=True)), MalformedFrame),
    ("float epoch", _bytes(_raw(epoch=1.0)), MalformedFrame),
    ("negative epoch", _bytes(_raw(epoch=-1)), MalformedFrame),
    ("huge epoch", _bytes(_raw(epoch=2**63)), MalformedFrame),
    ("bool as version", _bytes(_raw(v=True)), MalformedFrame),
    ("string version", _bytes(_raw(v="1")), MalformedFrame),
    ("bad machine id", _bytes(_raw(**{"from": "m_AAAAAAAAAAAAAAAA"})), MalformedFrame),
    ("short machine id", _bytes(_raw(to="m_abc")), MalformedFrame),
    ("machine id newline", _bytes(_raw(to=B + "\n")), MalformedFrame),
    ("empty id", _bytes(_raw(id="")), MalformedFrame),
    ("long id", _bytes(_raw(id="x" * 65)), MalformedFrame),
    ("id with space", _bytes(_raw(id="a b")), MalformedFrame),
    ("type not string", _bytes(_raw(type=1)), MalformedFrame),
    ("body not object", _bytes(_raw(body=[])), MalformedFrame),
    ("body missing field", _bytes(_raw(body={})), MalformedFrame),
    ("body extra field", _bytes(_raw(body={"ping_id": "p", "x": 1})), MalformedFrame),
    ("body wrong type", _bytes(_raw(body={"ping_id": 5})), MalformedFrame),
    ("NaN", b'{"v":1,"epoch":NaN}', MalformedFrame),
    ("lone surrogate", _bytes(_raw(body={"ping_id": "\ud800"})), MalformedFrame),
    ("ping optional wrong type", _bytes(_raw(type="ping", body={"version": 1})), MalformedFrame),
    ("ping extra field", _bytes(_raw(type="ping", body={"versions": "1"})), MalformedFrame),
    ("unknown version", _bytes(_raw(v=PROTOCOL_VERSION + 1)), UnknownVersion),
    ("version 0", _bytes(_raw(v=0)), UnknownVersion),
    ("unknown version, other shape", _bytes({"v": 99, "whatever": True}), UnknownVersion),
    ("unknown type", _bytes(_raw(type="teleport")), UnknownType),
    ("oversize", b"{" + b" " * LIMIT + b"}", FrameTooLarge),
]


@pytest.mark.parametrize(
    ("data", "error"), [(d, e) for _, d, e in REFUSALS], ids=[n for n, _, _ in REFUSALS]
)
def test_refusals(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode(data, LIMIT)


@pytest.mark.parametrize(
    "body", [{}, {"version": "0.2.0"}, {"version": "0.2.0", "protocols": [1, 2]}]
)
def test_a_ping_may_say_its_versions_or_not(body: dict[str, Any]) -> None:
    """Optional fields: a newer machine's ping says them, an older one's does not."""
    assert decode(_bytes(_raw(type="ping", body=body)), LIMIT).body == body


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(FrameTooLarge):
        decode(b"\xff" * 11, max_bytes=10)


def test_make_envelope_refuses_our_own_misuse() -> None:
    with pytest.raises(ValueError):
        make_envelope("pong", A, B, {}, "id1")
    with pytest.raises(ValueError):
        make_envelope("ping", A, "nobody", {}, "id1")
    with pytest.raises(ValueError):
        make_envelope("ping", A, B, {}, "id1", epoch=-1)


def test_body_is_read_only_copy() -> None:
    body = {"ping_id": "p1"}
    env = make_envelope("pong", A, B, body, "id1")
    body["ping_id"] = "changed"
    assert env.body["ping_id"] == "p1"
    with pytest.raises(TypeError):
        env.body["ping_id"] = "x"  # type: ignore[index]


def test_new_message_id_uses_the_rng() -> None:
    assert new_message_id(lambda n: bytes(range(n))) == "0001020304050607"
    with pytest.raises(ValueError):
        new_message_id(lambda n: b"short")
