"""The crypto of pairing: SPAKE2 between two real sides, no mocks, no network."""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable

import pytest

from baton.core.errors import PairingError, WrongCode
from baton.wire.pake import (
    MAX_FIELD_BYTES,
    JoinerPake,
    PakeKeys,
    Side,
    b64d,
    b64e,
    host_pake,
)

CODE = "maple-otter-4821"
OTHER = "maple-otter-4822"


def counter_rng(start: int = 0) -> Callable[[int], bytes]:
    state = {"n": start}

    def rng(n: int) -> bytes:
        state["n"] += 1
        return state["n"].to_bytes(n, "big")

    return rng


def run(joiner_code: str, host_code: str) -> tuple[PakeKeys, PakeKeys, bytes, bytes]:
    """One full exchange; returns (joiner keys, host keys, joiner msg, host msg)."""
    joiner = JoinerPake(joiner_code)
    host_message, host_keys = host_pake(host_code, joiner.message)
    return joiner.finish(host_message), host_keys, joiner.message, host_message


# --- same code -------------------------------------------------------------------


def test_same_code_agrees_on_transcript_sas_and_confirmations() -> None:
    j, h, _, _ = run(CODE, CODE)
    assert j.transcript == h.transcript and len(j.transcript) == 32
    assert j.sas == h.sas
    assert re.fullmatch(r"\d{3} \d{3}", j.sas)
    j.check_host_confirmation(h.host_confirmation())
    h.check_joiner_confirmation(j.joiner_confirmation())


def test_same_code_seals_and_opens_both_ways() -> None:
    j, h, _, _ = run(CODE, CODE)
    assert h.open(j.seal(b"identity card", Side.HOST), Side.JOINER) == b"identity card"
    assert j.open(h.seal(b"mesh roster", Side.JOINER), Side.HOST) == b"mesh roster"
    assert h.open(j.seal(b"", Side.HOST), Side.JOINER) == b""


def test_each_run_has_fresh_keys_and_transcript() -> None:
    j1, _, _, _ = run(CODE, CODE)
    j2, _, _, _ = run(CODE, CODE)
    assert j1.transcript != j2.transcript
    assert j1.host_confirmation() != j2.host_confirmation()


def test_injected_rng_supplies_the_nonce() -> None:
    joiner = JoinerPake(CODE, rng=counter_rng())
    host_message, h = host_pake(CODE, joiner.message, rng=counter_rng())
    j = joiner.finish(host_message)
    sealed_j = j.seal(b"x", Side.HOST)
    sealed_h = h.seal(b"x", Side.JOINER)
    assert sealed_j[1:13] == (1).to_bytes(12, "big") == sealed_h[1:13]
    assert sealed_j != sealed_h  # same nonce, different direction keys
    assert h.open(sealed_j, Side.JOINER) == b"x"


def test_short_rng_output_is_refused_loudly() -> None:
    joiner = JoinerPake(CODE, rng=lambda n: b"\0" * (n - 1))
    host_message, _ = host_pake(CODE, joiner.message)
    with pytest.raises(ValueError):
        joiner.finish(host_message).seal(b"x", Side.HOST)


# --- different codes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("joiner_code", "host_code"), [(CODE, OTHER), ("ant-bee-0000", "ant-bee-0001")]
)
def test_different_codes_fail_everywhere(joiner_code: str, host_code: str) -> None:
    j, h, _, _ = run(joiner_code, host_code)
    assert j.transcript == h.transcript  # the transcript is public; the keys differ
    assert j.sas != h.sas
    with pytest.raises(WrongCode) as err:
        j.check_host_confirmation(h.host_confirmation())
    assert err.value.attempts_left == 0
    with pytest.raises(WrongCode):
        h.check_joiner_confirmation(j.joiner_confirmation())
    with pytest.raises(PairingError):
        h.open(j.seal(b"card", Side.HOST), Side.JOINER)
    with pytest.raises(PairingError):
        j.open(h.seal(b"roster", Side.JOINER), Side.HOST)


# --- role and direction binding ------------------------------------------------------


def test_confirmations_are_role_bound() -> None:
    j, h, _, _ = run(CODE, CODE)
    assert j.host_confirmation() != j.joiner_confirmation()
    with pytest.raises(WrongCode):
        h.check_joiner_confirmation(h.host_confirmation())
    with pytest.raises(WrongCode):
        j.check_host_confirmation(j.joiner_confirmation())


def test_confirmation_of_wrong_type_or_length_is_wrong_code() -> None:
    j, h, _, _ = run(CODE, CODE)
    for bad in (b"", h.host_confirmation()[:-1], h.host_confirmation() + b"\0", "text"):
        with pytest.raises(WrongCode):
            j.check_host_confirmation(bad)  # type: ignore[arg-type]


def test_sealed_payloads_are_direction_bound() -> None:
    j, h, _, _ = run(CODE, CODE)
    to_host = j.seal(b"card", Side.HOST)
    with pytest.raises(PairingError):
        h.open(to_host, Side.HOST)  # reflected: as if the host had sent it
    with pytest.raises(PairingError):
        j.open(to_host, Side.HOST)  # the joiner's own payload sent back to it
    to_joiner = h.seal(b"roster", Side.JOINER)
    with pytest.raises(PairingError):
        h.open(to_joiner, Side.JOINER)


# --- tampering -----------------------------------------------------------------------


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_tampered_sealed_payloads_are_refused() -> None:
    j, h, _, _ = run(CODE, CODE)
    sealed = j.seal(b"identity card", Side.HOST)
    bad = [flip(sealed, i) for i in range(len(sealed))]
    bad += [sealed[:-1], sealed[:28], sealed[:1], b"", sealed + b"\0"]
    for data in bad:
        with pytest.raises(PairingError):
            h.open(data, Side.JOINER)


# --- malformed SPAKE2 messages -----------------------------------------------------


def malformed(own: bytes) -> list[bytes]:
    peer_side = b"B" if own[:1] == b"A" else b"A"
    return [
        b"",
        peer_side,
        peer_side + b"\0" * 31,
        peer_side + b"\0" * 33,
        peer_side + os.urandom(40),
        peer_side + b"\xff" * 32,
        peer_side + b"\0" * 32,
        b"C" + os.urandom(32),
        own,  # one's own message reflected as is
    ]


def test_joiner_refuses_malformed_host_messages() -> None:
    for i in range(len(malformed(b"A")) + 1):
        joiner = JoinerPake(CODE)
        # the last case reflects the joiner's own message with the side byte swapped
        bad = [*malformed(joiner.message), b"B" + joiner.message[1:]]
        with pytest.raises(PairingError):
            joiner.finish(bad[i])


def test_host_refuses_malformed_joiner_messages() -> None:
    # The host draws a fresh message inside host_pake, so an old host message sent
    # back with side byte A is just a wrong guess; with side byte B it is refused.
    host_message, _ = host_pake(CODE, JoinerPake(CODE).message)
    for message in malformed(host_message):
        with pytest.raises(PairingError):
            host_pake(CODE, message)


def test_random_messages_raise_only_pairing_error() -> None:
    # Some random strings are valid group elements: those yield keys (that will
    # fail confirmation); every other one must raise PairingError, nothing else.
    refused = 0
    for _ in range(200):
        for attempt in (
            lambda: host_pake(CODE, b"A" + os.urandom(32)),
            lambda: JoinerPake(CODE).finish(b"B" + os.urandom(32)),
        ):
            try:
                attempt()
            except PairingError:
                refused += 1
    assert refused > 200


def test_non_bytes_message_is_pairing_error() -> None:
    with pytest.raises(PairingError):
        host_pake(CODE, "A" * 33)  # type: ignore[arg-type]


def test_joiner_finishes_only_once() -> None:
    joiner = JoinerPake(CODE)
    host_message, _ = host_pake(CODE, joiner.message)
    joiner.finish(host_message)
    with pytest.raises(RuntimeError):
        joiner.finish(host_message)


# --- secrecy -----------------------------------------------------------------------------


def test_repr_shows_no_key_material() -> None:
    j, _, _, _ = run(CODE, CODE)
    text = repr(j)
    secrets = [j._confirm_host, j._confirm_joiner, j._to_host, j._to_joiner]
    for key in secrets:
        for form in (key.hex(), b64e(key), repr(key), key.hex()[:16]):
            assert form not in text
    assert "_to_host" not in text and "_confirm" not in text
    assert j.sas in text  # public: shown to the operator


def test_confirmations_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every MAC check goes through hmac.compare_digest, right or wrong."""
    j, h, _, _ = run(CODE, CODE)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("baton.wire.pake.hmac.compare_digest", spy)
    j.check_host_confirmation(h.host_confirmation())
    h.check_joiner_confirmation(j.joiner_confirmation())
    with pytest.raises(WrongCode):
        h.check_joiner_confirmation(bytes(32))
    assert [a for a, _ in calls] == [h.host_confirmation(), j.joiner_confirmation(), bytes(32)]


# --- base64 helpers ------------------------------------------------------------------------


def test_b64_round_trip() -> None:
    for data in (b"", b"\0", os.urandom(33), os.urandom(1000)):
        assert b64d(b64e(data), "msg") == data


@pytest.mark.parametrize(
    "bad", ["!!!!", "QQ", "QQ=", "QR==", "QQ==\n", " QQ==", "QQ==QQ==", "Q-_=", "é"]
)
def test_b64d_refuses_bad_base64_naming_the_field(bad: str) -> None:
    with pytest.raises(PairingError, match="spake_message"):
        b64d(bad, "spake_message")


@pytest.mark.parametrize("bad", [b"QQ==", None, 42, ["QQ=="]])
def test_b64d_refuses_non_strings(bad: object) -> None:
    with pytest.raises(PairingError, match="sealed_card"):
        b64d(bad, "sealed_card")  # type: ignore[arg-type]


def test_b64d_refuses_oversize_input() -> None:
    assert len(b64d(b64e(b"\0" * MAX_FIELD_BYTES), "roster")) == MAX_FIELD_BYTES
    with pytest.raises(PairingError, match="roster"):
        b64d(b64e(b"\0" * (MAX_FIELD_BYTES + 1)), "roster")
    with pytest.raises(PairingError, match="roster"):
        b64d("A" * 10_000_000, "roster")
