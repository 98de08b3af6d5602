"""PairingActor: the host side of pairing. Owns the pairing session and the live runs.

One actor, one thread, so every rule about the session holds without locks: each
started run costs one attempt and is saved before the host answers; a run finishes
at most once; of two joiners racing with the same code exactly one consumes it.
The session lives in the PairingSessionStore (it survives a restart); the runs, which
hold SPAKE2-derived keys, live only in memory and die with the session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pykka

from baton.core.clock import Clock
from baton.core.errors import NoPairingSession, PairingConsumed, PairingError
from baton.core.pairing import (
    PairingSession,
    PairingSessionStore,
    consume,
    new_session,
    session_state,
    start_attempt,
    wrong_code,
)
from baton.wire.pake import PakeKeys, host_pake

log = logging.getLogger("baton.pairing")

MAX_RUNS = 16  # runs kept in memory at once; a session allows 3, this bounds the rest


@dataclass(frozen=True)
class NewSession:
    verify: bool = False


@dataclass(frozen=True)
class StartRun:
    joiner_message: bytes


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    host_message: bytes
    keys: PakeKeys
    attempts_left: int  # after this run's attempt was spent


@dataclass(frozen=True)
class VerifyRun:
    """Check the joiner's confirmation; returns (session_id, keys). The run ends here."""

    run_id: str
    joiner_confirmation: bytes


@dataclass(frozen=True)
class ConsumeSession:
    """Mark the session used by a joiner; of two racing joiners exactly one gets here first."""

    session_id: str


@dataclass(frozen=True)
class AwaitApproval:
    """--verify mode: a confirmed joiner waits for the operator to compare the SAS."""

    session_id: str
    sas: str
    nickname: str


@dataclass(frozen=True)
class Decide:
    """The operator's answer for the joiner waiting on the current session."""

    session_id: str
    accept: bool


@dataclass(frozen=True)
class GetApproval:
    session_id: str
    sas: str


@dataclass(frozen=True)
class GetSessionView:
    pass


@dataclass
class _Pending:
    sas: str
    nickname: str
    decision: bool | None = None


@dataclass(frozen=True)
class _Run:
    session_id: str
    keys: PakeKeys


class PairingActor(pykka.ThreadingActor):
    def __init__(
        self, store: PairingSessionStore, clock: Clock, rng: Callable[[int], bytes]
    ) -> None:
        super().__init__()
        self.store = store
        self.clock = clock
        self.rng = rng
        self.runs: dict[str, _Run] = {}
        self.pending: dict[str, _Pending] = {}
        self._nobodys_code = rng(16).hex()  # SPAKE2's work when there is no session

    def on_receive(self, message: Any) -> Any:
        match message:
            case NewSession(verify=verify):
                session = new_session(self.rng, self.clock.wall_s(), verify=verify)
                self.store.save(session)
                self.runs.clear()  # a new code ends every run of the old one
                self.pending.clear()
                log.info("pairing: new session %s", session.session_id)
                return session
            case StartRun(joiner_message=msg):
                return self._start(msg)
            case VerifyRun(run_id=run_id, joiner_confirmation=mac):
                return self._verify(run_id, mac)
            case ConsumeSession(session_id=session_id):
                return self._consume(session_id)
            case AwaitApproval(session_id=sid, sas=sas, nickname=nickname):
                if sid in self.pending:  # one joiner per code goes before the operator
                    raise PairingError("another machine is already waiting with this code")
                self.pending[sid] = _Pending(sas, nickname)
                return None
            case GetApproval(session_id=sid, sas=sas):
                pending = self.pending.get(sid)
                if pending is None or pending.sas != sas:
                    return False  # the operator's answer is for the joiner it was shown
                return pending.decision
            case Decide(session_id=sid, accept=accept):
                return self._decide(sid, accept)
            case GetSessionView():
                return self._view()
        raise TypeError(f"PairingActor: unexpected message {message!r}")

    def _session(self) -> PairingSession:
        session = self.store.load()
        if session is None:
            raise NoPairingSession("this machine has no pairing session; run `baton pair` on it")
        return session

    def _start(self, joiner_message: bytes) -> RunStarted:
        stored = self.store.load()
        # The same work whatever is stored (against a code nobody holds when there is no
        # session), so neither the answer nor its time tells a stranger whether a session
        # exists; a message that is not a SPAKE2 element is refused before it costs an
        # attempt (issue 16: three malformed starts burned the code). The answer is
        # computed first but leaves only after the attempt is spent.
        code = stored.code if stored is not None else self._nobodys_code
        host_message, keys = host_pake(code, joiner_message)
        if stored is None:
            raise NoPairingSession("this machine has no pairing session; run `baton pair` on it")
        session = start_attempt(stored, self.clock.wall_s())
        self.store.save(session)  # the attempt is spent before anything is answered
        run_id = self.rng(8).hex()
        if len(self.runs) >= MAX_RUNS:
            self.runs.pop(next(iter(self.runs)))
        self.runs[run_id] = _Run(session.session_id, keys)
        log.info(
            "pairing: run %s started (attempt %d of %d)",
            run_id,
            session.attempts_used,
            session.max_attempts,
        )
        return RunStarted(run_id, host_message, keys, session.attempts_left)

    def _decide(self, session_id: str, accept: bool) -> None:
        pending = self.pending.get(session_id)
        if pending is None or pending.decision is not None:
            raise PairingError("no joiner is waiting for a decision on this code")
        pending.decision = accept
        if not accept:  # the SAS did not match: someone else may know the code; burn it
            session = self._session()
            self.store.save(replace(session, attempts_used=session.max_attempts))
            self.runs.clear()
            log.warning(
                "pairing: operator refused %s (SAS mismatch); code burned", pending.nickname
            )

    def _view(self) -> dict[str, Any]:
        session = self._session()
        pending = self.pending.get(session.session_id)
        return {
            "session_id": session.session_id,
            "state": session_state(session, self.clock.wall_s()).name.lower(),
            "verify": session.verify,
            "attempts_left": session.attempts_left,
            "expires_at": session.expires_at,
            "waiting": None
            if pending is None or pending.decision is not None
            else {"sas": pending.sas, "nickname": pending.nickname},
        }

    def _verify(self, run_id: str, joiner_confirmation: bytes) -> tuple[PairingSession, PakeKeys]:
        """The key confirmation first: only a joiner that proved the code learns what
        became of the session since its run started (used, replaced)."""
        run = self.runs.pop(run_id, None)
        if run is None:
            raise PairingError("unknown or already finished pairing run; start again")
        session = self.store.load()
        same = session is not None and session.session_id == run.session_id
        try:
            run.keys.check_joiner_confirmation(joiner_confirmation)
        except PairingError:
            log.warning("pairing: run %s failed key confirmation (wrong code)", run_id)
            raise wrong_code(session.attempts_left if same and session else 0) from None
        if session is None or not same:
            raise PairingError("the pairing code changed since this run started; start again")
        if session.consumed:
            raise PairingConsumed("another machine has just joined with this code")
        return session, run.keys

    def _consume(self, session_id: str) -> PairingSession:
        session = self._session()
        if session.session_id != session_id:
            raise PairingError("the pairing code changed; ask for a new one")
        consumed = consume(session, self.clock.wall_s())
        self.store.save(consumed)  # other runs stay, to be told "already used" when they finish
        log.info("pairing: session %s consumed", session_id)
        return consumed
