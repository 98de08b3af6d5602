"""LiveTailTransport: what leaves the holder is redacted and sealed to one recipient;
what arrives is opened strictly (every malformed shape is a TailRefused)."""

from __future__ import annotations

import base64
from typing import Any

import nacl.public
import pytest

from baton.core.errors import TailRefused
from baton.core.live_tail import DEFAULT_REDACTIONS, TailFrame, compile_redactions
from baton.core.transcript import TranscriptTurn
from baton.wire.envelope import Envelope, decode, encode, make_envelope
from baton.wire.tail_transport import LiveTailTransport, open_ack, open_flush, unseal

HOLDER, STANDBY = "m_aaaaaaaaaaaaaaaa", "m_bbbbbbbbbbbbbbbb"
KEY = nacl.public.PrivateKey(bytes([7]) * 32)
OTHER = nacl.public.PrivateKey(bytes([8]) * 32)


def transport(sent: list[Envelope], max_turn: int = 1 << 20) -> LiveTailTransport:
    patterns = compile_redactions(DEFAULT_REDACTIONS)
    return LiveTailTransport(HOLDER, lambda e: sent.append(e) or True, patterns, max_turn)


def turn(seq: int = 1, text: str = "hello", replies: tuple[str, ...] = ("hi",)) -> TranscriptTurn:
    return TranscriptTurn("1/0", seq, f"k{seq}", seq, text, replies, 5.0)


def frame_of(box: bytes, seq: int = 1) -> TailFrame:
    return TailFrame("1/0", seq, f"k{seq}", "" if seq == 1 else f"k{seq - 1}", box)


def test_a_sealed_turn_opens_only_with_the_recipients_key() -> None:
    box = transport([]).seal(turn(), bytes(KEY.public_key))
    assert b"hello" not in box
    assert unseal(frame_of(box), KEY) == turn()
    with pytest.raises(TailRefused, match="does not open"):
        unseal(frame_of(box), OTHER)
    with pytest.raises(TailRefused, match="another turn"):
        unseal(TailFrame("1/0", 1, "k9", "", box), KEY)


def test_secrets_are_redacted_before_sealing() -> None:
    secret = turn(text="password: hunter2", replies=("ok sk-abcdefghijklmnopqrstu",))
    opened = unseal(frame_of(transport([]).seal(secret, bytes(KEY.public_key))), KEY)
    assert "hunter2" not in opened.text and "sk-abc" not in opened.replies[0]
    assert opened.ledger_key == "k1" and opened.seq == 1


def test_a_turn_too_large_travels_with_its_texts_elided() -> None:
    big = turn(text="x" * 5000, replies=("y" * 3000,))
    opened = unseal(frame_of(transport([], max_turn=2000).seal(big, bytes(KEY.public_key))), KEY)
    assert opened.text == "[elided from the live tail: 5000 bytes]"
    assert opened.replies == ("[elided from the live tail: 3000 bytes]",)


def test_flush_and_ack_round_trip_through_the_envelope() -> None:
    sent: list[Envelope] = []
    t = transport(sent)
    box = t.seal(turn(), bytes(KEY.public_key))
    assert t.flush(STANDBY, 4, [frame_of(box)], {"1/0": 1})
    assert t.ack(STANDBY, 4, {"1/0": (1, "k1")}, True)
    flush, ack = (decode(encode(e), 1 << 20) for e in sent)
    assert flush.type == "tail" and flush.epoch == 4 and flush.to == STANDBY
    assert open_flush(flush) == ([frame_of(box)], {"1/0": 1})
    assert open_ack(ack) == ({"1/0": (1, "k1")}, True)


def env(type_: str, body: dict[str, Any]) -> Envelope:
    return make_envelope(type_, HOLDER, STANDBY, body, "id1", epoch=3)


GOOD_BOX = base64.b64encode(b"box").decode()


@pytest.mark.parametrize(
    "body",
    [
        {"frames": [["1/0", 1, "k1", ""]], "heads": {}},  # four fields
        {"frames": ["1/0"], "heads": {}},
        {"frames": [["1/0", 1, "k1", "", "not base64!"]], "heads": {}},
        {"frames": [["1/0", 1, "k1", "", 7]], "heads": {}},
        {"frames": [["1/0", 0, "k1", "", GOOD_BOX]], "heads": {}},  # seq 0
        {"frames": [["1/0", 2, "k2", "", GOOD_BOX]], "heads": {}},  # no prev
        {"frames": [["", 1, "k1", "", GOOD_BOX]], "heads": {}},
        {"frames": [], "heads": {"1/0": -1}},
        {"frames": [], "heads": {"1/0": True}},
        {"frames": [], "heads": {"": 1}},
        {"frames": [["1/0", 1, "k1", "", GOOD_BOX]] * 257, "heads": {}},
    ],
)
def test_a_malformed_flush_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(TailRefused):
        open_flush(env("tail", body))


@pytest.mark.parametrize(
    "have",
    [{"1/0": [1]}, {"1/0": [1, 2]}, {"1/0": ["1", "k"]}, {"1/0": [-1, "k"]}, {"t" * 65: [1, "k"]}],
)
def test_a_malformed_ack_is_refused(have: dict[str, Any]) -> None:
    with pytest.raises(TailRefused):
        open_ack(env("tail_ack", {"have": have, "pull": False}))
