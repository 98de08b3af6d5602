"""The handoff's two state machines: every path of the sentinel and the receiver, and a
property: whatever events arrive in whatever order, the sentinel yields only after a
verified, matching ack of its own begin, a drain and a confirmation, before its
deadline; and every stop of ingress ends in a yield or a resume."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.core.errors import IllegalEvent
from baton.core.handoff import (
    NOT_AWAKE,
    AbortArrived,
    HandoffTicked,
    Outcome,
    SendAbort,
    heads_of,
    may_retry,
)
from baton.core.handoff_receiver import (
    LOOK_AGAIN_MS,
    BeginArrived,
    CatchUp,
    CaughtUp,
    Done,
    HandoffReceiver,
    LeaseSeen,
    LookUp,
    ReceiverTiming,
    RPhase,
    SendAck,
    SendRequest,
    WakeupAsked,
    receiver_step,
)
from baton.core.handoff_receiver import (
    RULES as RECEIVER_RULES,
)
from baton.core.handoff_sentinel import (
    ACK_GRACE,
    AckArrived,
    BeginAsked,
    Confirmed,
    Drained,
    FlushTo,
    HandoffSentinel,
    ResumeIngress,
    SendBegin,
    SentinelEvent,
    SPhase,
    StopIngress,
    YieldTo,
    sentinel_step,
)
from baton.core.handoff_sentinel import (
    RULES as SENTINEL_RULES,
)

T, H, X = "m_target", "m_holder", "m_other"
HEADS = heads_of({"1/0": (3, "k3"), "2/0": (1, "j1")})
ACK_MS = 5000.0
TIMING = ReceiverTiming(ACK_MS, 15000.0)


def run(s: HandoffSentinel, *events: SentinelEvent) -> tuple[HandoffSentinel, list[object]]:
    out: list[object] = []
    for event in events:
        s, effects = sentinel_step(s, event, ACK_MS)
        out += effects
    return s, out


def kinds(effects: list[object]) -> list[type]:
    return [type(e) for e in effects if not isinstance(e, Outcome)]


ASKED = BeginAsked("h1", T, 7, HEADS, 42, 0.0)
GOOD_ACK = AckArrived("h1", T, 7, HEADS, 42, True, 10.0)


def test_heads_are_sorted_triples() -> None:
    assert heads_of({"b": (2, "y"), "a": (1, "x")}) == (("a", 1, "x"), ("b", 2, "y"))


def test_the_sentinel_yields_after_a_good_ack_a_drain_and_a_confirmation() -> None:
    s, effects = run(HandoffSentinel(), ASKED)
    assert effects[0] == SendBegin(T, "h1", 7, HEADS, 42) and s.phase is SPhase.BEGUN
    s, effects = run(s, GOOD_ACK)
    assert kinds(effects) == [StopIngress] and s.phase is SPhase.DRAINING
    s, effects = run(s, Drained(20.0))
    assert effects == [FlushTo(T)]
    s, effects = run(s, Confirmed(30.0))
    assert kinds(effects) == [YieldTo] and effects[0] == YieldTo(T, 7)
    assert s == HandoffSentinel()


def test_a_machine_that_is_not_awake_refuses_to_begin() -> None:
    s, effects = run(HandoffSentinel(), BeginAsked("h1", T, None, (), 0, 0.0))
    assert s == HandoffSentinel() and effects[0] == SendAbort(T, "h1", "this machine is not awake")


def test_a_forged_or_mismatching_ack_aborts_and_the_holder_stays_awake() -> None:
    for ack, why in (
        (AckArrived("h1", T, 7, HEADS, 42, False, 1.0), "forged"),
        (AckArrived("h1", T, 6, HEADS, 42, True, 1.0), "epoch"),
        (AckArrived("h1", T, 7, HEADS[:1], 42, True, 1.0), "heads"),
        (AckArrived("h1", T, 7, HEADS, 41, True, 1.0), "position"),
    ):
        s, effects = run(HandoffSentinel(), ASKED, ack)
        assert s == HandoffSentinel()
        [abort] = [e for e in effects if isinstance(e, SendAbort)]
        assert why in abort.reason
        assert StopIngress not in kinds(effects) and YieldTo not in kinds(effects)


def test_acks_for_another_handoff_or_from_another_machine_change_nothing() -> None:
    s, _ = run(HandoffSentinel(), ASKED)
    for ack in (
        AckArrived("h2", T, 7, HEADS, 42, True, 1.0),
        AckArrived("h1", X, 7, HEADS, 42, True, 1.0),
    ):
        after, effects = run(s, ack)
        assert after == s and kinds(effects) == []
    assert run(HandoffSentinel(), GOOD_ACK)[0] == HandoffSentinel()  # no begin: nothing to ack


def test_timeouts_and_a_lost_lease_abort_and_resume_ingress() -> None:
    s, effects = run(HandoffSentinel(), ASKED, HandoffTicked(ACK_MS, 7))
    assert s.phase is SPhase.BEGUN  # a grace beyond the target's own timeout
    s, effects = run(s, HandoffTicked(ACK_MS * ACK_GRACE, 7))
    assert s == HandoffSentinel() and kinds(effects) == [SendAbort]
    assert "no ack from" in effects[0].reason  # type: ignore[attr-defined]
    s, effects = run(HandoffSentinel(), ASKED, GOOD_ACK, HandoffTicked(10.0 + ACK_MS, 7))
    assert kinds(effects)[-2:] == [ResumeIngress, SendAbort]
    s, effects = run(HandoffSentinel(), ASKED, GOOD_ACK, Drained(11.0), HandoffTicked(12.0, 8))
    assert kinds(effects)[-2:] == [ResumeIngress, SendAbort] and s == HandoffSentinel()
    assert "no longer holds" in effects[-2].reason  # type: ignore[attr-defined]
    s, effects = run(HandoffSentinel(), ASKED, HandoffTicked(1.0, 7))
    assert s.phase is SPhase.BEGUN  # before the deadline, holding: nothing happens


def test_one_handoff_at_a_time_and_the_target_may_give_up() -> None:
    s, _ = run(HandoffSentinel(), ASKED)
    after, effects = run(s, BeginAsked("h9", X, 7, HEADS, 42, 1.0))
    assert after == s and effects[0] == SendAbort(X, "h9", f"a handoff to {T} is in progress")
    after, effects = run(s, ASKED)  # the same request again: begin again
    assert after == s and kinds(effects) == [SendBegin]
    s, effects = run(s, GOOD_ACK, AbortArrived("h1", T, "gave up"))
    assert s == HandoffSentinel() and kinds(effects) == [StopIngress, ResumeIngress]


EVENTS = st.one_of(
    st.builds(BeginAsked, st.sampled_from(["h1", "h2"]), st.sampled_from([T, X]),
              st.sampled_from([7, None]), st.just(HEADS), st.just(42), st.floats(0, 9000)),
    st.builds(AckArrived, st.sampled_from(["h1", "h2"]), st.sampled_from([T, X]),
              st.sampled_from([7, 6]), st.sampled_from([HEADS, ()]), st.sampled_from([42, 1]),
              st.booleans(), st.floats(0, 9000)),
    st.builds(Drained, st.floats(0, 9000)),
    st.builds(Confirmed, st.floats(0, 9000)),
    st.builds(AbortArrived, st.sampled_from(["h1", "h2"]), st.sampled_from([T, X]), st.just("x")),
    st.builds(HandoffTicked, st.floats(0, 20000), st.sampled_from([7, 8, None])),
)  # fmt: skip


@settings(max_examples=500)
@given(st.lists(EVENTS, max_size=30))
def test_the_sentinel_never_yields_without_its_whole_protocol(events: list[SentinelEvent]) -> None:
    s = HandoffSentinel()
    stopped = False
    for event in events:
        before = s
        s, effects = sentinel_step(s, event, ACK_MS)
        for effect in effects:
            if isinstance(effect, YieldTo):
                assert before.phase is SPhase.FLUSHING and isinstance(event, Confirmed)
                assert stopped and (effect.to, effect.epoch) == (before.target, before.epoch)
                stopped = False
            elif isinstance(effect, StopIngress):
                assert not stopped and isinstance(event, AckArrived)
                assert event.signed and (event.epoch, event.heads, event.position) == (
                    before.epoch,
                    before.heads,
                    before.position,
                )
                stopped = True
            elif isinstance(effect, ResumeIngress):
                assert stopped
                stopped = False
    assert stopped == (s.phase in (SPhase.DRAINING, SPhase.FLUSHING))


# --- the receiver ------------------------------------------------------------------


def rrun(r: HandoffReceiver, *events: object) -> tuple[HandoffReceiver, list[object]]:
    out: list[object] = []
    for event in events:
        r, effects = receiver_step(r, event, TIMING)  # type: ignore[arg-type]
        out += effects
    return r, out


def wake(force: bool = False, holder: str | None = H, expires: float = 9000.0) -> WakeupAsked:
    return WakeupAsked("h1", force, False, holder, 7, expires, 0.0)


BEGIN = BeginArrived("h1", H, 7, HEADS, 42, H, 7)


def test_the_receiver_acks_after_catching_up_and_is_done_when_it_holds() -> None:
    r, effects = rrun(HandoffReceiver(), wake())
    assert effects == [SendRequest(H, "h1")] and r.phase is RPhase.REQUESTED
    r, effects = rrun(r, BEGIN)
    assert effects[0] == CatchUp(H, HEADS) and r.phase is RPhase.CATCHING_UP
    r, effects = rrun(r, CaughtUp("h1", 100.0))
    assert effects[0] == SendAck(H, "h1", 7, HEADS, 42) and r.phase is RPhase.ACKED
    r, effects = rrun(r, LeaseSeen(T, 8, True, 0.0))
    assert effects == [Done(True, "handed_over", "awake at epoch 8", 8)] and r == HandoffReceiver()


def test_wakeup_on_the_awake_machine_changes_nothing() -> None:
    r, effects = rrun(HandoffReceiver(), WakeupAsked("h1", False, True, T, 7, 0.0, 0.0))
    assert r == HandoffReceiver() and effects == [Done(True, "already_awake", effects[0].detail, 7)]  # type: ignore[attr-defined]


def test_a_begin_from_a_machine_that_is_not_the_holder_is_refused() -> None:
    r, _ = rrun(HandoffReceiver(), wake())
    for begin in (
        BeginArrived("h1", X, 7, HEADS, 42, H, 7),  # not the holder
        BeginArrived("h1", H, 6, HEADS, 42, H, 7),  # an old epoch
        BeginArrived("h2", H, 7, HEADS, 42, H, 7),  # another wakeup's
    ):
        after, effects = rrun(r, begin)
        assert after == r and [type(e) for e in effects] == [Outcome]
    after, effects = rrun(HandoffReceiver(), BEGIN)  # nobody asked
    assert after == HandoffReceiver()
    r, effects = rrun(r, HandoffTicked(ACK_MS, None))
    assert r == HandoffReceiver() and effects[-1].outcome == "timeout"  # type: ignore[attr-defined]
    assert isinstance(effects[0], SendAbort)


def test_a_receiver_that_cannot_catch_up_gives_up_and_says_so() -> None:
    r, effects = rrun(HandoffReceiver(), wake(), BEGIN, HandoffTicked(ACK_MS, None))
    assert r == HandoffReceiver()
    assert effects[-2] == SendAbort(H, "h1", effects[-1].detail)  # type: ignore[attr-defined]
    assert "catch up" in effects[-1].detail  # type: ignore[attr-defined]


def test_an_abort_or_a_moved_lease_ends_the_wakeup_with_the_reason() -> None:
    r, effects = rrun(HandoffReceiver(), wake(), AbortArrived("h1", H, "the ack does not match"))
    assert r == HandoffReceiver() and effects[-1] == Done(
        False, "refused", f"{H} refused: the ack does not match"
    )
    r, effects = rrun(HandoffReceiver(), wake(), BEGIN, LeaseSeen(X, 8, False, 0.0))
    assert r == HandoffReceiver() and "moved to" in effects[-1].detail  # type: ignore[attr-defined]
    r, effects = rrun(HandoffReceiver(), wake(), AbortArrived("h1", X, "spoof"))
    assert r.phase is RPhase.REQUESTED  # only the holder can abort it


def test_a_stale_view_of_the_holder_looks_up_and_asks_the_machine_that_holds() -> None:
    # the lease moved (H yielded to X) before word of it reached this machine: H says it
    # is not awake, this machine reads the store and asks X; H's abort changes nothing
    r, effects = rrun(HandoffReceiver(), wake(), AbortArrived("h1", H, NOT_AWAKE))
    assert r.phase is RPhase.LOOKING and kinds(effects) == [SendRequest, LookUp]
    r, effects = rrun(r, LeaseSeen(X, 8, False, 4000.0))
    assert r.phase is RPhase.REQUESTED and (r.holder, r.epoch) == (X, 8)
    assert kinds(effects) == [SendRequest] and effects[0] == SendRequest(X, "h1")
    assert r.deadline == 4000.0 + ACK_MS  # news that came late: X gets a whole ack timeout
    after, effects = rrun(r, AbortArrived("h1", H, NOT_AWAKE))
    assert after == r  # from the machine asked before: ignored
    r, effects = rrun(r, BeginArrived("h1", X, 8, HEADS, 42, X, 8), CaughtUp("h1", 9.0))
    assert effects[-2] == SendAck(X, "h1", 8, HEADS, 42) and r.phase is RPhase.ACKED
    # the news may come first, without any abort: asked again all the same
    r, effects = rrun(HandoffReceiver(), wake(), LeaseSeen(X, 8, False, 0.0))
    assert kinds(effects) == [SendRequest, SendRequest] and effects[1] == SendRequest(X, "h1")
    assert r.holder == X
    # another reason is a refusal; and nobody seen holding by the deadline is a timeout
    r, effects = rrun(HandoffReceiver(), wake(), AbortArrived("h1", H, "not in sync yet"))
    assert r == HandoffReceiver() and effects[-1].outcome == "refused"  # type: ignore[attr-defined]
    r, effects = rrun(
        HandoffReceiver(), wake(), AbortArrived("h1", H, NOT_AWAKE), LeaseSeen(H, 7, False, 0.0)
    )
    assert r.phase is RPhase.LOOKING  # the same record again: still looking
    # the store still names H (its gate was closed a moment): H is asked again, later
    r, effects = rrun(r, HandoffTicked(100.0, None), HandoffTicked(100.0 + LOOK_AGAIN_MS - 1, None))
    assert r.phase is RPhase.LOOKING and effects == []
    again, effects = rrun(r, HandoffTicked(100.0 + LOOK_AGAIN_MS, None))
    assert again.phase is RPhase.REQUESTED and effects == [SendRequest(H, "h1")]
    r, effects = rrun(r, HandoffTicked(ACK_MS, None))
    assert r == HandoffReceiver() and effects == [Done(False, "timeout", effects[0].detail)]  # type: ignore[attr-defined]
    assert "does not hold" in effects[0].detail  # type: ignore[attr-defined]
    assert not any(isinstance(e, SendAbort) for e in effects)


def test_force_takes_over_only_an_expired_lease() -> None:
    r, effects = rrun(HandoffReceiver(), wake(force=True, expires=2500.0))
    assert r == HandoffReceiver() and effects[0].outcome == "refused"  # type: ignore[attr-defined]
    assert "2.5 s" in effects[0].detail  # type: ignore[attr-defined]
    r, effects = rrun(HandoffReceiver(), wake(force=True, expires=0.0))
    assert r.phase is RPhase.FORCING
    r, effects = rrun(r, LeaseSeen(T, 8, True, 0.0))
    assert effects == [Done(True, "took_over", "awake at epoch 8", 8)]
    r, effects = rrun(
        HandoffReceiver(), wake(force=True, holder=None, expires=0.0), HandoffTicked(15000.0, None)
    )
    assert effects[-1].outcome == "timeout" and not any(  # type: ignore[attr-defined]
        isinstance(e, SendAbort) for e in effects
    )


def test_no_holder_and_a_second_wakeup_are_refused_with_reasons() -> None:
    r, effects = rrun(HandoffReceiver(), wake(holder=None))
    assert r == HandoffReceiver() and effects[0].outcome == "refused"  # type: ignore[attr-defined]
    r, _ = rrun(HandoffReceiver(), wake())
    after, effects = rrun(r, wake())
    assert after == r and effects[0].outcome == "busy"  # type: ignore[attr-defined]


def test_a_wakeup_is_tried_again_only_where_a_new_attempt_may_succeed() -> None:
    assert may_retry("refused", "h refused: t is not in sync yet (it is catching up); try again")
    assert may_retry("refused", "h refused: a handoff to x is in progress")
    assert may_retry("timeout", "no begin from the holder h within the ack timeout")
    assert may_retry("busy", "a wakeup is in progress (requested)")
    assert not may_retry("refused", "h refused: the ack from t is not signed by it (forged)")
    assert not may_retry("refused", "h refused: the ack does not match begin (heads)")
    assert not may_retry("refused", "nobody holds the lease (a standby takes over by itself)")
    assert not may_retry("handed_over", "awake at epoch 3")


def test_what_is_not_an_event_of_a_side_is_an_illegal_event() -> None:
    with pytest.raises(IllegalEvent, match="not a sentinel event"):
        sentinel_step(HandoffSentinel(), CaughtUp("h1", 0.0), ACK_MS)  # type: ignore[arg-type]
    with pytest.raises(IllegalEvent, match="not a receiver event"):
        receiver_step(HandoffReceiver(), Drained(0.0), TIMING)  # type: ignore[arg-type]


def test_an_event_without_a_rule_in_its_phase_changes_nothing() -> None:
    """Drained outside DRAINING, Confirmed outside FLUSHING: told as ignored; on the
    receiver a late CaughtUp or a lease change while idle: silence."""
    for phase in SPhase:
        s = HandoffSentinel(phase, "h1", T, 7)
        for event in (Drained(1.0), Confirmed(1.0)):
            if (phase, type(event)) in SENTINEL_RULES:
                continue
            after, effects = sentinel_step(s, event, ACK_MS)
            assert after == s and [type(e) for e in effects] == [Outcome]
    r = HandoffReceiver()
    for event in (CaughtUp("h1", 1.0), LeaseSeen(X, 9, False, 1.0), HandoffTicked(1e9, None)):
        assert receiver_step(r, event, TIMING) == (r, [])
    assert (RPhase.IDLE, CaughtUp) not in RECEIVER_RULES
