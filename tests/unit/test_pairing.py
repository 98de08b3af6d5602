"""Pairing rules: the word list, codes, and the session's states and transitions."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.errors import (
    InvalidCode,
    PairingBurned,
    PairingConsumed,
    PairingError,
    PairingExpired,
    WrongCode,
)
from baton.core.pairing import (
    CLOCK_BACK_TOLERANCE_S,
    CODE_SPACE,
    WORDS,
    PairingSession,
    SessionState,
    consume,
    guess_probability,
    mint_code,
    new_session,
    normalize_code,
    session_state,
    start_attempt,
    wrong_code,
)

NOW = 1_700_000_000.0
CODE_RE = re.compile(r"^[a-z]{3,6}-[a-z]{3,6}-[0-9]{4}$")


def scripted(*chunks: bytes) -> Callable[[int], bytes]:
    """An rng that returns exactly these chunks, in order, and checks each size asked."""
    queue = list(chunks)

    def rng(n: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == n, f"asked for {n} bytes, script has {len(chunk)}"
        return chunk

    return rng


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def fresh(**changes: Any) -> PairingSession:
    return dataclasses.replace(new_session(seeded(1), NOW), **changes)


# --- the word list ---------------------------------------------------------------


def test_there_are_256_distinct_short_lowercase_words() -> None:
    assert len(WORDS) == 256
    assert len(set(WORDS)) == 256
    assert all(re.fullmatch(r"[a-z]{3,6}", w) for w in WORDS), WORDS


def test_no_word_is_a_prefix_of_another() -> None:
    clashes = [(a, b) for a in WORDS for b in WORDS if a != b and b.startswith(a)]
    assert clashes == []


def test_guessing_three_times_hits_one_code_in_about_two_hundred_million() -> None:
    assert CODE_SPACE == 256 * 256 * 10_000
    assert guess_probability() == 3 / CODE_SPACE
    assert guess_probability() == pytest.approx(4.6e-9, rel=0.01)


# --- minting -------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**32))
def test_minted_codes_have_the_shape_and_parse_back(seed: int) -> None:
    code = mint_code(seeded(seed))
    assert CODE_RE.match(code)
    assert normalize_code(code) == code


def test_minting_with_a_seeded_rng_is_deterministic() -> None:
    assert mint_code(seeded(7)) == mint_code(seeded(7))
    assert len({mint_code(seeded(s)) for s in range(50)}) > 1


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 59_999))
def test_each_word_comes_from_its_own_byte_and_digits_from_two_bytes(
    a: int, b: int, v: int
) -> None:
    code = mint_code(scripted(bytes([a]), bytes([b]), v.to_bytes(2, "big")))
    assert code == f"{WORDS[a]}-{WORDS[b]}-{v % 10_000:04d}"


@given(st.integers(60_000, 65_535))
def test_a_digit_draw_of_60000_or_more_is_rejected_and_drawn_again(high: int) -> None:
    rng = scripted(b"\x00", b"\xff", high.to_bytes(2, "big"), (42).to_bytes(2, "big"))
    assert mint_code(rng) == f"{WORDS[0]}-{WORDS[255]}-0042"


def test_every_four_digit_value_has_the_same_number_of_accepted_draws() -> None:
    counts: Counter[str] = Counter()
    for v in range(65_536):
        try:
            code = mint_code(scripted(b"\x00", b"\x00", v.to_bytes(2, "big")))
        except IndexError:  # rejected: the script has no second digit draw
            assert v >= 60_000
            continue
        counts[code[-4:]] += 1
    assert len(counts) == 10_000
    assert set(counts.values()) == {6}


def test_an_rng_that_never_gives_an_acceptable_draw_fails_loudly() -> None:
    with pytest.raises(ValueError, match="not random"):
        mint_code(lambda n: b"\xff" * n)


def test_an_rng_that_returns_the_wrong_number_of_bytes_fails_loudly() -> None:
    with pytest.raises(ValueError, match="bytes"):
        mint_code(lambda n: b"\x01" * (n + 1))


# --- normalizing what the operator typed ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "apple-tiger-0042",
        "  Apple-Tiger-0042 ",
        "APPLE-TIGER-0042\n",
        "apple tiger 0042",
        "\tapple  tiger-0042",
        "apple - tiger - 0042",
    ],
)
def test_normalize_accepts_case_blanks_and_either_separator(text: str) -> None:
    assert normalize_code(text) == "apple-tiger-0042"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "apple-tiger",
        "apple-tiger-0042-owl",
        "apple-tiger-042",
        "apple-tiger-00420",
        "apple-tiger-abcd",
        "apple-tiger--042",
        "apples-tiger-0042",
        "apple-lemur-0042",
        "0042-apple-tiger",
        "apple_tiger_0042",
        "apple.tiger.0042",
        "\u0430pple-tiger-0042",  # a Cyrillic a
        "apple-tiger-\u0660\u0660\u0664\u0662",  # Arabic-Indic digits
        "apple-tiger-\uff10\uff10\uff14\uff12",  # fullwidth digits
    ],
)
def test_normalize_refuses_what_is_not_a_code_without_echoing_it(text: str) -> None:
    with pytest.raises(InvalidCode) as info:
        normalize_code(text)
    assert "word-word-NNNN" in info.value.detail
    for part in re.split(r"[\s\-_.]+", text.strip()):
        if len(part) >= 3:
            assert part.lower() not in info.value.detail.lower(), part


# --- the session -------------------------------------------------------------------


def test_a_new_session_is_open_and_made_of_the_rng() -> None:
    session = new_session(seeded(3), NOW, verify=True)
    assert session == new_session(seeded(3), NOW, verify=True)
    assert CODE_RE.match(session.code)
    assert re.fullmatch(r"[0-9a-f]{16}", session.session_id)
    assert (session.created_at, session.expires_at) == (NOW, NOW + 120.0)
    assert (session.attempts_used, session.max_attempts) == (0, 3)
    assert session.verify is True and session.consumed is False
    assert session_state(session, NOW) is SessionState.OPEN


def test_the_repr_keeps_the_code_secret() -> None:
    session = fresh()
    assert session.code not in repr(session)
    assert session.session_id in repr(session)


CREATED = fresh()
EXPIRES = CREATED.expires_at


def started(times: int) -> PairingSession:
    session = CREATED
    for _ in range(times):
        session = start_attempt(session, NOW)
    return session


# (name, session, now) -> state, what start_attempt does, what consume does;
# None means the call is allowed.
TRANSITIONS: list[tuple[str, PairingSession, float, SessionState, Any, Any]] = [
    ("fresh", CREATED, NOW, SessionState.OPEN, None, None),
    ("one second before expiry", CREATED, EXPIRES - 1, SessionState.OPEN, None, None),
    ("clock back within tolerance", CREATED, NOW - CLOCK_BACK_TOLERANCE_S, SessionState.OPEN,
     None, None),
    ("after 2 starts", started(2), NOW, SessionState.OPEN, None, None),
    ("after 3 starts", started(3), NOW, SessionState.BURNED, PairingBurned, None),
    ("at expiry", CREATED, EXPIRES, SessionState.EXPIRED, PairingExpired, PairingExpired),
    ("long expired", CREATED, EXPIRES + 3600, SessionState.EXPIRED, PairingExpired,
     PairingExpired),
    ("clock went back", CREATED, NOW - CLOCK_BACK_TOLERANCE_S - 0.001, SessionState.EXPIRED,
     PairingExpired, PairingExpired),
    ("burned and expired", started(3), EXPIRES, SessionState.EXPIRED, PairingExpired,
     PairingExpired),
    ("consumed", consume(CREATED, NOW), NOW, SessionState.CONSUMED, PairingConsumed,
     PairingConsumed),
    ("consumed and expired", consume(CREATED, NOW), EXPIRES, SessionState.CONSUMED,
     PairingConsumed, PairingConsumed),
    ("consumed on the last attempt", consume(started(3), NOW), NOW, SessionState.CONSUMED,
     PairingConsumed, PairingConsumed),
]  # fmt: skip


@pytest.mark.parametrize(
    ("session", "now", "state", "on_start", "on_consume"),
    [t[1:] for t in TRANSITIONS],
    ids=[t[0] for t in TRANSITIONS],
)
def test_transition_table(
    session: PairingSession, now: float, state: SessionState, on_start: Any, on_consume: Any
) -> None:
    before = dataclasses.replace(session)
    assert session_state(session, now) is state
    for event, expected in ((start_attempt, on_start), (consume, on_consume)):
        if expected is None:
            after = event(session, now)
            assert after != session
        else:
            with pytest.raises(PairingError) as info:
                event(session, now)
            assert type(info.value) is expected
        assert session == before  # the old session is never changed


def test_three_starts_burn_the_session_and_a_fourth_is_refused() -> None:
    session = started(3)
    assert session.attempts_used == 3
    with pytest.raises(PairingBurned, match="run `baton pair` again"):
        start_attempt(session, NOW)


def test_the_third_started_attempt_can_still_succeed() -> None:
    done = consume(started(3), NOW + 1)
    assert done.consumed and session_state(done, NOW + 1) is SessionState.CONSUMED


def test_of_two_racing_joiners_exactly_one_consumes() -> None:
    session = started(2)
    winner = consume(session, NOW)
    with pytest.raises(PairingConsumed, match="run `baton pair` again"):
        consume(winner, NOW)


@pytest.mark.parametrize(
    ("now", "needle"),
    [(EXPIRES, "expired"), (NOW - CLOCK_BACK_TOLERANCE_S - 1, "clock went back")],
)
def test_expiry_errors_say_why_and_what_to_do(now: float, needle: str) -> None:
    with pytest.raises(PairingExpired) as info:
        start_attempt(CREATED, now)
    assert needle in info.value.detail and "run `baton pair` again" in info.value.detail


@pytest.mark.parametrize(
    ("starts", "left", "text"),
    [
        (1, 2, "wrong code; 2 attempts left"),
        (2, 1, "wrong code; 1 attempt left"),
        (3, 0, "wrong code; no attempts left, the code is burned; run `baton pair` again"),
    ],
)
def test_wrong_code_says_how_many_attempts_are_left(starts: int, left: int, text: str) -> None:
    error = wrong_code(started(starts).attempts_left)
    assert isinstance(error, WrongCode)
    assert (error.attempts_left, error.detail) == (left, text)


EVENTS = st.lists(
    st.tuples(st.sampled_from(["start", "consume"]), st.floats(-10.0, 200.0)), max_size=12
)


@given(EVENTS)
def test_no_sequence_of_events_gives_more_than_3_guesses_or_2_winners(
    events: list[tuple[str, float]],
) -> None:
    session, starts, consumes = CREATED, 0, 0
    for name, offset in events:
        try:
            nxt = (start_attempt if name == "start" else consume)(session, NOW + offset)
        except PairingError:
            continue
        starts += name == "start"
        consumes += name == "consume"
        session = nxt
    assert starts <= 3 and consumes <= 1
    assert session.attempts_used == starts and session.consumed == (consumes == 1)


# --- encoding --------------------------------------------------------------------


@st.composite
def sessions(draw: st.DrawFn) -> PairingSession:
    created = draw(st.floats(0, 4e9, allow_nan=False))
    max_attempts = draw(st.integers(1, 10))
    return PairingSession(
        code=f"{draw(st.sampled_from(WORDS))}-{draw(st.sampled_from(WORDS))}-"
        f"{draw(st.integers(0, 9999)):04d}",
        created_at=created,
        expires_at=created + draw(st.floats(0.5, 1e6)),
        attempts_used=draw(st.integers(0, max_attempts)),
        max_attempts=max_attempts,
        consumed=draw(st.booleans()),
        verify=draw(st.booleans()),
        session_id=draw(st.binary(min_size=8, max_size=8)).hex(),
    )


@given(sessions())
def test_to_dict_and_from_dict_round_trip_through_json(session: PairingSession) -> None:
    doc = json.loads(json.dumps(session.to_dict()))
    assert PairingSession.from_dict(doc) == session


def spoiled(**changes: Any) -> dict[str, Any]:
    return {**CREATED.to_dict(), **changes}


def without(key: str) -> dict[str, Any]:
    doc = CREATED.to_dict()
    del doc[key]
    return doc


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (without("code"), "code"),
        (without("session_id"), "session_id"),
        (spoiled(extra=1), "extra"),
        (spoiled(code="Apple-Tiger-0042"), "code"),
        (spoiled(code="apple-lemur-0042"), "code"),
        (spoiled(code=42), "code"),
        (spoiled(created_at="1700000000"), "created_at"),
        (spoiled(created_at=True), "created_at"),
        (spoiled(created_at=math.nan), "created_at"),
        (spoiled(expires_at=math.inf), "expires_at"),
        (spoiled(expires_at=10**400), "expires_at"),
        (spoiled(expires_at=NOW), "expires_at"),
        (spoiled(attempts_used=True), "attempts_used"),
        (spoiled(attempts_used=1.0), "attempts_used"),
        (spoiled(attempts_used=-1), "attempts_used"),
        (spoiled(attempts_used=4), "attempts_used"),
        (spoiled(max_attempts=0), "max_attempts"),
        (spoiled(consumed=0), "consumed"),
        (spoiled(verify="yes"), "verify"),
        (spoiled(session_id="ABCDEF0123456789"), "session_id"),
        (spoiled(session_id="abc"), "session_id"),
    ],
)
def test_from_dict_refuses_anything_but_exact_fields_and_types(
    doc: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}:") as info:
        PairingSession.from_dict(doc)
    assert CREATED.code not in str(info.value)


def test_from_dict_refuses_what_is_not_an_object() -> None:
    with pytest.raises(ValueError, match="session"):
        PairingSession.from_dict([])  # type: ignore[arg-type]


def test_whole_numbers_are_accepted_as_times_and_stored_as_floats() -> None:
    session = PairingSession.from_dict(spoiled(created_at=1, expires_at=121))
    assert type(session.created_at) is float and session.expires_at == 121.0
