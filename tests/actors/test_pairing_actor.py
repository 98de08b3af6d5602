"""PairingActor with a memory store and a fake clock: attempts, runs and --verify."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pykka
import pytest

from baton.actors.pairing_actor import (
    AwaitApproval,
    ConsumeSession,
    Decide,
    GetApproval,
    NewSession,
    PairingActor,
    StartRun,
    VerifyRun,
)
from baton.core.clock import FakeClock
from baton.core.errors import NoPairingSession, PairingConsumed, PairingError, WrongCode
from baton.stores.pairing_store import FilePairingSessionStore, MemoryPairingSessionStore
from baton.wire.pake import JoinerPake

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def actor() -> Iterator[tuple[pykka.ActorRef, MemoryPairingSessionStore]]:  # type: ignore[type-arg]
    store = MemoryPairingSessionStore()
    ref = PairingActor.start(store, FakeClock(), random.Random(7).randbytes)
    yield ref, store
    ref.stop(timeout=5)


def run(ref: pykka.ActorRef, code: str):  # type: ignore[no-untyped-def,type-arg]
    joiner = JoinerPake(code)
    started = ref.ask(StartRun(joiner.message), timeout=5)
    keys = joiner.finish(started.host_message)
    return started.run_id, keys


def test_a_wrong_code_costs_an_attempt_and_says_how_many_are_left(actor) -> None:  # type: ignore[no-untyped-def]
    ref, store = actor
    session = ref.ask(NewSession(), timeout=5)
    words, digits = session.code.rsplit("-", 1)
    wrong = f"{words}-{(int(digits) + 1) % 10000:04d}"
    run_id, keys = run(ref, wrong)
    assert store.load().attempts_used == 1  # type: ignore[union-attr]
    with pytest.raises(WrongCode) as info:
        ref.ask(VerifyRun(run_id, keys.joiner_confirmation()), timeout=5)
    assert info.value.attempts_left == 2


@pytest.mark.parametrize(
    "message",
    [b"", b"A" * 10, b"B" + bytes(32), b"A" + b"\xff" * 32, b"A" + b"\xee" * 40],
)
def test_a_malformed_start_costs_no_attempt(actor, message: bytes) -> None:  # type: ignore[no-untyped-def]
    """Issue 16: anyone could burn a code with three malformed requests. A message that
    is not a SPAKE2 element is refused before the attempt is spent; the code still
    works after three of them."""
    ref, store = actor
    session = ref.ask(NewSession(), timeout=5)
    for _ in range(3):
        with pytest.raises(PairingError):
            ref.ask(StartRun(message), timeout=5)
    assert store.load().attempts_used == 0  # type: ignore[union-attr]
    run_id, keys = run(ref, session.code)
    verified = ref.ask(VerifyRun(run_id, keys.joiner_confirmation()), timeout=5)[0]
    assert verified.session_id == session.session_id and verified.attempts_used == 1


def test_a_start_does_the_same_work_and_refuses_alike_with_no_session(actor) -> None:  # type: ignore[no-untyped-def]
    """Review of issue 16: with no session a malformed start was refused one way and
    quickly, with one another way after the SPAKE2 work: an oracle for "has this node
    ever paired". Now both do the work and raise a PairingError (one refusal at HTTP)."""
    ref, store = actor
    with pytest.raises(NoPairingSession):
        ref.ask(StartRun(JoinerPake("maple-otter-4821").message), timeout=5)
    with pytest.raises(PairingError):
        ref.ask(StartRun(b"A" + b"\xff" * 32), timeout=5)
    assert store.load() is None


def test_a_wrong_confirmation_is_told_wrong_code_before_what_became_of_the_session(
    actor,  # type: ignore[no-untyped-def]
) -> None:
    """Only a joiner that proved the code learns that another joined first."""
    ref, _ = actor
    session = ref.ask(NewSession(), timeout=5)
    winner, loser = run(ref, session.code), run(ref, session.code)
    s1, _ = ref.ask(VerifyRun(winner[0], winner[1].joiner_confirmation()), timeout=5)
    ref.ask(ConsumeSession(s1.session_id), timeout=5)
    with pytest.raises(WrongCode):
        ref.ask(VerifyRun(loser[0], bytes(32)), timeout=5)


def test_verify_mode_lets_one_joiner_before_the_operator_and_binds_the_answer_to_it(
    actor,  # type: ignore[no-untyped-def]
) -> None:
    ref, _ = actor
    session = ref.ask(NewSession(verify=True), timeout=5)
    first, second = run(ref, session.code), run(ref, session.code)
    s1, k1 = ref.ask(VerifyRun(first[0], first[1].joiner_confirmation()), timeout=5)
    s2, k2 = ref.ask(VerifyRun(second[0], second[1].joiner_confirmation()), timeout=5)
    ref.ask(AwaitApproval(s1.session_id, k1.sas, "bravo"), timeout=5)
    with pytest.raises(PairingError, match="already waiting"):
        ref.ask(AwaitApproval(s2.session_id, k2.sas, "mallory"), timeout=5)
    assert ref.ask(GetApproval(s1.session_id, k1.sas), timeout=5) is None
    ref.ask(Decide(s1.session_id, True), timeout=5)
    assert ref.ask(GetApproval(s1.session_id, k1.sas), timeout=5) is True
    assert ref.ask(GetApproval(s2.session_id, "000 000"), timeout=5) is False
    ref.ask(ConsumeSession(s1.session_id), timeout=5)
    with pytest.raises(PairingConsumed):
        ref.ask(ConsumeSession(s2.session_id), timeout=5)


def test_a_restart_between_start_and_finish_ends_the_run_but_keeps_the_spent_attempt(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """The run's keys live only in memory; the attempt it cost was saved before the host
    answered, so a restart can neither finish the run nor hand back the attempt."""
    store = FilePairingSessionStore(tmp_path / "pairing-session.json")
    first = PairingActor.start(store, FakeClock(), random.Random(1).randbytes)
    try:
        session = first.ask(NewSession(), timeout=5)
        run_id, keys = run(first, session.code)
    finally:
        first.stop(timeout=5)
    reopened = FilePairingSessionStore(tmp_path / "pairing-session.json")
    second = PairingActor.start(reopened, FakeClock(), random.Random(2).randbytes)
    try:
        with pytest.raises(PairingError, match="unknown or already finished"):
            second.ask(VerifyRun(run_id, keys.joiner_confirmation()), timeout=5)
        saved = reopened.load()
        assert saved is not None and saved.attempts_used == 1 and not saved.consumed
        again, keys = run(second, session.code)  # the same code, a new run: it still works
        done, _ = second.ask(VerifyRun(again, keys.joiner_confirmation()), timeout=5)
        assert done.session_id == session.session_id
        assert reopened.load().attempts_used == 2  # type: ignore[union-attr]
    finally:
        second.stop(timeout=5)
