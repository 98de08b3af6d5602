"""Pairing codes and the pairing session: the rules, with no I/O.

Theory of operation. `baton pair` mints a code WORD-WORD-NNNN and a session that
remembers it. Each protocol run a joiner starts (SPAKE2 keyed by the whole code) costs
the session one attempt *before* the host answers, so whoever does not know the code
gets at most ``max_attempts`` guesses, in at most ``expiry_s`` seconds, out of
CODE_SPACE codes. A run whose key confirmation checks out consumes the session; of two
joiners racing with the same code exactly one consumes it, the other is refused.

A session is in exactly one state, decided by ``session_state(session, now)``:

    CONSUMED  a joiner used the code                  (wins over everything)
    EXPIRED   now >= expires_at, or the wall clock went back more than
              CLOCK_BACK_TOLERANCE_S before created_at (refuse, never extend)
    BURNED    attempts_used >= max_attempts
    OPEN      none of the above

Two events change a session; _ALLOWED below is the whole state machine:

    start_attempt   allowed in OPEN only; attempts_used += 1
    consume         allowed in OPEN and BURNED (the last allowed attempt may succeed,
                    and it is the attempt that burned the session); consumed = True

Invariants:
- The code is secret: all of it (both words and the digits) comes from the injected
  ``rng``, and no error message here ever echoes a code or part of one.
- Every word is uniform over the 256 WORDS (one byte each) and the digits are uniform
  over 0000-9999 (rejection sampling, no modulo bias).
- Sessions are values: every function returns a new session and never changes the old
  one; an illegal event raises a PairingError and changes nothing.
- attempts_used never exceeds max_attempts, and a consumed session stays consumed.
- The caller (the pairing actor) consumes a session only for a run it started on that
  same session (session_id ties a run to its session, so a stale run cannot consume a
  newer code).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from enum import Enum
from typing import Any, Protocol

from baton.core.errors import (
    InvalidCode,
    PairingBurned,
    PairingConsumed,
    PairingError,
    PairingExpired,
    WrongCode,
)
from baton.core.words import WORDS as WORDS  # re-exported: the list is part of the code rules

Rng = Callable[[int], bytes]

MAX_ATTEMPTS = 3
DEFAULT_EXPIRY_S = 120.0
CLOCK_BACK_TOLERANCE_S = 5.0
CODE_SPACE = len(WORDS) * len(WORDS) * 10_000
CODE_FORM = "word-word-NNNN (two words from the pairing word list and four digits)"

_WORD_SET = frozenset(WORDS)
_DIGITS_RE = re.compile(r"[0-9]{4}")
_SEPARATOR_RE = re.compile(r"[ \t-]+")
_SESSION_ID_RE = re.compile(r"[0-9a-f]{16}")
_DIGIT_LIMIT = 60_000  # the largest multiple of 10_000 a 2-byte draw can reach
_MAX_DRAWS = 64  # a fair rng is rejected 64 times in a row with p < 1e-68


def guess_probability(attempts: int = MAX_ATTEMPTS) -> float:
    """The chance that ``attempts`` online guesses hit one code: 3 / CODE_SPACE ~ 4.6e-9."""
    return attempts / CODE_SPACE


# --- codes -------------------------------------------------------------------------


def _draw(rng: Rng, n: int) -> bytes:
    data = rng(n)
    if len(data) != n:
        raise ValueError(f"rng returned {len(data)} bytes, {n} were asked for")
    return data


def mint_code(rng: Rng) -> str:
    """A fresh secret code "word-word-NNNN", every part drawn from ``rng``."""
    first = WORDS[_draw(rng, 1)[0]]
    second = WORDS[_draw(rng, 1)[0]]
    for _ in range(_MAX_DRAWS):
        value = int.from_bytes(_draw(rng, 2), "big")
        if value < _DIGIT_LIMIT:  # 60_000 values map 6-to-1 onto 0000-9999: no bias
            return f"{first}-{second}-{value % 10_000:04d}"
    raise ValueError(f"rng gave {_MAX_DRAWS} draws >= {_DIGIT_LIMIT} in a row; it is not random")


def _invalid(reason: str) -> InvalidCode:
    return InvalidCode(f"expected a pairing code of the form {CODE_FORM}; {reason}")


def normalize_code(text: str) -> str:
    """The canonical form of a code the operator typed, or InvalidCode.

    Surrounding blanks and case are ignored; the three parts may be separated by
    hyphens or spaces. The error says what is wrong with the shape, never the text.
    """
    if not isinstance(text, str) or not text.isascii():
        raise _invalid("it is not plain ascii text")
    parts = _SEPARATOR_RE.split(text.strip().lower())
    if len(parts) != 3:
        raise _invalid(f"it has {len(parts)} part(s), not 3")
    first, second, digits = parts
    if first not in _WORD_SET or second not in _WORD_SET:
        raise _invalid("a word is not on the pairing word list")
    if not _DIGITS_RE.fullmatch(digits):
        raise _invalid("the last part is not 4 digits")
    return f"{first}-{second}-{digits}"


# --- the session ---------------------------------------------------------------------


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number")
    return number


def _check_type(name: str, value: object, kind: type) -> None:
    # bool is a subclass of int, but a flag is not a count and a count is not a flag
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{name}: expected {kind.__name__}, got {type(value).__name__}")


@dataclass(frozen=True)
class PairingSession:
    """The one live pairing session of a machine (a value; see the module comment)."""

    code: str
    created_at: float
    expires_at: float
    attempts_used: int
    max_attempts: int
    consumed: bool
    verify: bool  # interactive mode: the operator confirms the SAS before registration
    session_id: str  # 16 hex chars; ties a protocol run to the session it started on

    def __post_init__(self) -> None:
        _check_type("code", self.code, str)
        try:
            canonical = normalize_code(self.code) == self.code
        except InvalidCode:
            canonical = False
        if not canonical:
            raise ValueError("code: not a canonical pairing code")
        for name in ("created_at", "expires_at"):
            object.__setattr__(self, name, _check_number(name, getattr(self, name)))
        if not self.expires_at > self.created_at:
            raise ValueError("expires_at: must be later than created_at")
        _check_type("max_attempts", self.max_attempts, int)
        if self.max_attempts < 1:
            raise ValueError("max_attempts: must be at least 1")
        _check_type("attempts_used", self.attempts_used, int)
        if not 0 <= self.attempts_used <= self.max_attempts:
            raise ValueError("attempts_used: must be between 0 and max_attempts")
        _check_type("consumed", self.consumed, bool)
        _check_type("verify", self.verify, bool)
        _check_type("session_id", self.session_id, str)
        if not _SESSION_ID_RE.fullmatch(self.session_id):
            raise ValueError("session_id: expected 16 lowercase hex characters")

    @property
    def attempts_left(self) -> int:
        return self.max_attempts - self.attempts_used

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PairingSession:
        """Strict: exactly the fields of to_dict, each of its type; else ValueError."""
        if not isinstance(data, Mapping):
            raise ValueError(f"session: expected an object, got {type(data).__name__}")
        expected = {f.name for f in fields(cls)}
        missing, extra = expected - set(data), set(data) - expected
        if missing:
            raise ValueError(f"{sorted(missing)[0]}: missing")
        if extra:
            raise ValueError(f"{sorted(map(str, extra))[0]}: unknown field")
        return cls(**data)

    def __repr__(self) -> str:  # keep the secret code out of logs and tracebacks
        return (
            f"PairingSession(session_id={self.session_id!r}, code=<secret>, "
            f"created_at={self.created_at!r}, expires_at={self.expires_at!r}, "
            f"attempts_used={self.attempts_used}, max_attempts={self.max_attempts}, "
            f"consumed={self.consumed}, verify={self.verify})"
        )


def new_session(
    rng: Rng,
    now_wall: float,
    verify: bool = False,
    expiry_s: float = DEFAULT_EXPIRY_S,
    max_attempts: int = MAX_ATTEMPTS,
) -> PairingSession:
    """A fresh, open session with a new code; it replaces any earlier one."""
    code = mint_code(rng)
    return PairingSession(
        code=code,
        created_at=now_wall,
        expires_at=now_wall + expiry_s,
        attempts_used=0,
        max_attempts=max_attempts,
        consumed=False,
        verify=verify,
        session_id=_draw(rng, 8).hex(),
    )


class SessionState(Enum):
    OPEN = "open"
    EXPIRED = "expired"
    BURNED = "burned"
    CONSUMED = "consumed"


class Event(Enum):
    START_ATTEMPT = "start_attempt"
    CONSUME = "consume"


_ALLOWED: dict[SessionState, frozenset[Event]] = {
    SessionState.OPEN: frozenset({Event.START_ATTEMPT, Event.CONSUME}),
    SessionState.BURNED: frozenset({Event.CONSUME}),
    SessionState.EXPIRED: frozenset(),
    SessionState.CONSUMED: frozenset(),
}


def _clock_went_back(session: PairingSession, now_wall: float) -> bool:
    return now_wall < session.created_at - CLOCK_BACK_TOLERANCE_S


def session_state(session: PairingSession, now_wall: float) -> SessionState:
    """Where the session stands at wall time ``now_wall`` (see the module comment)."""
    if session.consumed:
        return SessionState.CONSUMED
    if now_wall >= session.expires_at or _clock_went_back(session, now_wall):
        return SessionState.EXPIRED
    if session.attempts_used >= session.max_attempts:
        return SessionState.BURNED
    return SessionState.OPEN


def _refusal(session: PairingSession, state: SessionState, now_wall: float) -> PairingError:
    if state is SessionState.CONSUMED:
        return PairingConsumed(
            "this pairing code was already used by a machine that joined; "
            "run `baton pair` again for a new code"
        )
    if state is SessionState.EXPIRED:
        if _clock_went_back(session, now_wall):
            return PairingExpired(
                "the wall clock went back past the time this pairing code was made; "
                "run `baton pair` again for a new code"
            )
        lifetime = session.expires_at - session.created_at
        return PairingExpired(
            f"the pairing code has expired (codes live {lifetime:g} s); "
            "run `baton pair` again for a new code"
        )
    return PairingBurned(
        f"the pairing code has used up its {session.max_attempts} attempts; "
        "run `baton pair` again for a new code"
    )


def _check_allowed(session: PairingSession, event: Event, now_wall: float) -> None:
    state = session_state(session, now_wall)
    if event not in _ALLOWED[state]:
        raise _refusal(session, state, now_wall)


def start_attempt(session: PairingSession, now_wall: float) -> PairingSession:
    """Spend one attempt on a new protocol run; only an OPEN session allows it."""
    _check_allowed(session, Event.START_ATTEMPT, now_wall)
    return replace(session, attempts_used=session.attempts_used + 1)


def consume(session: PairingSession, now_wall: float) -> PairingSession:
    """Mark the code used by the joiner whose run confirmed it; at most once."""
    _check_allowed(session, Event.CONSUME, now_wall)
    return replace(session, consumed=True)


def wrong_code(attempts_left: int) -> WrongCode:
    """The error for a run that failed key confirmation, given the attempts left after
    its own attempt was spent (``start_attempt``'s session's attempts_left)."""
    left = max(attempts_left, 0)
    if left == 0:
        detail = "wrong code; no attempts left, the code is burned; run `baton pair` again"
    else:
        detail = f"wrong code; {left} attempt{'s' if left > 1 else ''} left"
    return WrongCode(detail, attempts_left=left)


class PairingSessionStore(Protocol):
    """Where a machine keeps its one pairing session (adapters: baton.stores.pairing_store).

    load() returns the saved session, or None if there is none.
    save(session) replaces the saved session atomically: a crash leaves the old or the new.
    clear() removes the saved session; clearing an empty store is not an error.
    A saved session that cannot be read (corrupt, or readable by other users) makes
    load() raise HomeError naming it, and it is left untouched.
    """

    def load(self) -> PairingSession | None: ...

    def save(self, session: PairingSession) -> None: ...

    def clear(self) -> None: ...
