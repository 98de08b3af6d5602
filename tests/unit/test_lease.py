"""The pure lease core, scenario by scenario, in simulated time (tests/unit/lease_sim.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from baton.core.errors import IllegalEvent, ReplayedLease, StaleLease
from baton.core.lease import (
    Alarm,
    Attempt,
    Broadcast,
    Dropped,
    Fenced,
    InSyncWanted,
    LeaseChanged,
    LookUpAsked,
    Phase,
    RecordSeen,
    StoreAnswered,
    StoreFailed,
    TakeoverForced,
    WriteLease,
    YieldRequested,
    can_act,
    holder,
    step,
)
from baton.core.lease_record import LeaseRecord, sign_record
from baton.core.lease_store import CasResult
from tests.unit.lease_sim import TIMING, Sim, SimMachine

WINDOW = TIMING.holder_window  # 3000 * 0.99 - 150 = 2820 ms
WAIT = TIMING.standby_wait(TIMING.ttl_ms)  # 3030 ms


def kinds(effects: list[object]) -> list[str]:
    return [type(e).__name__ for e in effects]


def test_a_lone_machine_acquires_epoch_1_and_tells_everyone() -> None:
    sim = Sim(1)
    [a] = sim.machines
    assert kinds(sim.tick(a)) == ["WriteLease"]
    sim.carry_out(a)
    assert a.state.phase is Phase.HOLDING and a.state.mine and a.state.mine.epoch == 1
    changed = [e for e in a.effects if isinstance(e, LeaseChanged)]
    assert changed == [LeaseChanged(Phase.HOLDING, a.me, 1, "acquired")]
    assert a.state.deadline == pytest.approx(WINDOW)
    assert can_act(a.state, WINDOW - 1) and not can_act(a.state, WINDOW)


def test_the_holder_renews_and_its_deadline_follows_the_last_send() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(5000)
    assert holder(a.state) == a.me and holder(b.state) == a.me
    assert a.state.mine is not None and a.state.mine.epoch == 1 and a.state.mine.nonce >= 4
    last = a.state.last_write
    assert last is not None and a.state.deadline == pytest.approx(last + WINDOW)
    assert b.state.phase is Phase.STANDBY and not sim.actors()[1:]


def test_a_holder_cut_off_from_the_store_suspends_at_its_deadline_and_a_standby_takes_over(
) -> None:  # fmt: skip
    sim = Sim(2)
    a, _ = sim.machines
    sim.run(1000)
    confirmed = a.state.deadline
    assert confirmed is not None
    sim.store.down = True
    sim.run(confirmed - sim.now(a) - 60)
    assert can_act(a.state, sim.now(a)), "still inside its window"
    sim.run(200)
    assert a.state.phase is Phase.STANDBY and not can_act(a.state, sim.now(a))
    assert any(isinstance(e, Alarm) and e.kind == "store_unavailable" for e in a.effects)
    sim.store.down = False
    sim.run(WAIT + 1000)
    acting = sim.actors()
    assert len(acting) == 1 and acting[0].state.mine and acting[0].state.mine.epoch == 2


def test_a_paused_holder_is_replaced_and_never_acts_again_on_the_old_epoch() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1500)
    a.paused = True
    sim.run(WAIT + 1500)
    assert b.state.phase is Phase.HOLDING and b.state.mine and b.state.mine.epoch == 2
    a.paused = False  # SIGCONT: its deadline passed while it slept
    assert not can_act(a.state, sim.now(a))
    sim.run(3000)
    assert a.state.phase is Phase.STANDBY and holder(a.state) == b.me
    assert {e for _, m, e in sim.acted if m == a.me} == {1}
    assert min(t for t, m, _ in sim.acted if m == b.me) > max(
        t for t, m, _ in sim.acted if m == a.me
    )


def test_two_standbys_racing_for_an_expired_lease_one_wins_epoch_plus_one() -> None:
    sim = Sim(3)
    a, b, c = sim.machines
    sim.run(1500)
    a.paused = True
    sim.run(WAIT + 100)  # b and c both see the lease expire; the store picks one
    holders = [m for m in (b, c) if m.state.phase is Phase.HOLDING]
    assert len(holders) == 1 and holders[0].state.mine and holders[0].state.mine.epoch == 2


def test_a_clean_release_lets_a_standby_take_over_at_once() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1500)
    sim.stop(a)
    assert a.state.phase is Phase.STANDBY and not can_act(a.state, sim.now(a))
    sim.carry_out(a)
    sim.deliver_all()
    assert b.state.known is not None and b.state.known.released
    sim.tick(b)  # one write: the tombstone came with the store's token for it
    sim.carry_out(b)
    assert b.state.phase is Phase.HOLDING and b.state.mine and b.state.mine.epoch == 2


def yield_to(sim: Sim, m: SimMachine, to: SimMachine) -> list[object]:
    return list(sim.feed(m, YieldRequested(to.me, sim.now(m), 1.7e9)))


def test_a_yield_hands_the_lease_to_one_machine_and_the_others_wait() -> None:
    sim = Sim(3)
    a, b, c = sim.machines
    sim.run(1500)
    effects = yield_to(sim, a, b)
    assert not can_act(a.state, sim.now(a)) and kinds(effects) == ["LeaseChanged", "WriteLease"]
    assert "yielded to" in next(e for e in effects if isinstance(e, LeaseChanged)).reason
    sim.carry_out(a)
    assert [to for to, _, _ in sim.wire] == [b.me] and sim.wire[0][2] is not None
    sim.deliver_all()
    assert c.state.known is not None and not c.state.known.released  # c was not told
    sim.tick(c)
    sim.tick(a)
    assert c.pending is None and a.pending is None  # neither tries to acquire
    sim.tick(b)  # b CASes from the tombstone's token at once
    sim.carry_out(b)
    assert b.state.phase is Phase.HOLDING and b.state.mine and b.state.mine.epoch == 2
    sim.run(WAIT * 2)
    assert [m.me for m in sim.actors()] == [b.me]
    assert holder(a.state) == holder(c.state) == b.me


def test_a_renewal_in_flight_when_yielding_is_released_when_it_lands() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1500)
    sim.advance(TIMING.renew_ms)
    sim.tick(a)
    assert a.pending is not None and a.pending.kind == "renew"
    assert kinds(yield_to(sim, a, b)) == ["LeaseChanged"]  # the renewal's answer releases
    sim.carry_out(a)
    assert a.pending is not None and a.pending.kind == "release"
    sim.carry_out(a)
    sim.deliver_all()
    sim.tick(b)
    sim.carry_out(b)
    assert b.state.phase is Phase.HOLDING and not can_act(a.state, sim.now(a))


def test_a_machine_that_yielded_takes_the_lease_back_at_once_when_it_is_yielded_to() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1500)
    yield_to(sim, a, b)
    sim.carry_out(a)
    sim.deliver_all()
    sim.run(300)
    assert [m.me for m in sim.actors()] == [b.me]
    yield_to(sim, b, a)  # well inside a's hold-off
    sim.carry_out(b)
    sim.deliver_all()
    sim.tick(a)
    sim.carry_out(a)
    assert [m.me for m in sim.actors()] == [a.me] and a.state.mine and a.state.mine.epoch == 3


def test_a_standby_cannot_yield_and_a_target_that_never_comes_is_replaced() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1500)
    [alarm] = yield_to(sim, b, a)
    assert isinstance(alarm, Alarm) and alarm.kind == "yield_refused"
    b.paused = True  # the target never takes it
    yield_to(sim, a, b)
    sim.carry_out(a)
    sim.run(WAIT - 100)
    assert not sim.actors()  # a holds off a whole standby wait
    sim.run(500)
    assert [m.me for m in sim.actors()] == [a.me] and a.state.mine and a.state.mine.epoch == 2


def test_stale_and_replayed_records_are_dropped_and_change_nothing() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1500)
    old = a.state.mine
    assert old is not None
    before = b.state
    effects = sim.feed(b, RecordSeen(old, sim.now(b)))  # delivered twice
    assert [type(e.error) for e in effects if isinstance(e, Dropped)] == [ReplayedLease]
    assert b.state == before
    stale = sign_record(LeaseRecord(a.me, 1, 99, 3000, 0.0), a.cfg.signer)
    b.state = replace(b.state, floor=2)
    effects = sim.feed(b, RecordSeen(stale, sim.now(b)))
    assert [type(e.error) for e in effects if isinstance(e, Dropped)] == [StaleLease]


def test_a_higher_epoch_on_the_wire_demotes_the_holder_at_once() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1500)
    rival = sign_record(LeaseRecord(b.me, 2, 0, 3000, 0.0), b.cfg.signer)
    effects = sim.feed(a, RecordSeen(rival, sim.now(a)))
    assert a.state.phase is Phase.STANDBY and not can_act(a.state, sim.now(a))
    assert LeaseChanged(Phase.STANDBY, b.me, 2, f"{b.me} holds epoch 2") in effects


def test_split_brain_same_epoch_two_holders_alarms_and_the_lower_id_stands_down() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1500)
    assert a.state.mine is not None
    twin = sign_record(LeaseRecord(b.me, a.state.mine.epoch, 7, 3000, 0.0), b.cfg.signer)
    effects = sim.feed(a, RecordSeen(twin, sim.now(a)))
    assert any(isinstance(e, Alarm) and e.kind == "split_brain" for e in effects)
    assert (a.state.phase is Phase.STANDBY) == (a.me < b.me)


def test_a_peer_claiming_a_lower_epoch_is_told_the_current_record() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1500)
    a.state = replace(a.state, mine=replace(a.state.mine, epoch=5), floor=5)  # type: ignore[arg-type]
    claim = sign_record(LeaseRecord(b.me, 3, 0, 3000, 0.0), b.cfg.signer)
    effects = sim.feed(a, RecordSeen(claim, sim.now(a)))
    assert kinds(effects) == ["Alarm", "SendTo", "Dropped"]
    assert a.state.phase is Phase.HOLDING


def test_a_write_whose_answer_was_lost_counts_once_the_store_shows_it() -> None:
    sim = Sim(1)
    [a] = sim.machines
    sim.tick(a)
    sim.carry_out(a, lose_answer=True)  # it landed; we never heard
    assert a.state.phase is Phase.STANDBY and a.state.store_ok is False
    sim.advance(TIMING.retry_ms + 1)
    sim.tick(a)  # tries again from "nothing stored": loses, and sees its own record
    sim.carry_out(a)
    assert a.state.phase is Phase.HOLDING and a.state.mine and a.state.mine.epoch == 1
    assert a.state.deadline == pytest.approx(WINDOW), "measured from the first send"


def test_an_old_holder_restarting_rejoins_as_standby_and_waits() -> None:
    sim = Sim(1)
    [a] = sim.machines
    sim.run(1500)
    a.state = type(a.state)()  # a restart: memory gone, the store remembers
    sim.tick(a)
    sim.carry_out(a)
    assert a.state.phase is Phase.STANDBY and holder(a.state) == a.me
    sim.run(WAIT - 200)
    assert a.state.phase is Phase.STANDBY
    sim.run(500)
    assert a.state.phase is Phase.HOLDING and a.state.mine and a.state.mine.epoch == 2


def test_garbage_in_the_store_is_replaced_only_after_a_full_wait() -> None:
    sim = Sim(1)
    [a] = sim.machines
    sim.store.put_garbage(b"not a lease")
    sim.tick(a)
    sim.carry_out(a)
    assert any(isinstance(e, Alarm) and e.kind == "store_garbage" for e in a.effects)
    assert a.state.phase is Phase.STANDBY
    sim.run(WAIT - 100)
    assert a.state.phase is Phase.STANDBY
    sim.run(300)
    assert a.state.phase is Phase.HOLDING


def test_answers_for_a_write_not_in_flight_are_refused() -> None:
    sim = Sim(1)
    [a] = sim.machines
    [write] = sim.tick(a)
    assert isinstance(write, WriteLease)
    sim.carry_out(a)
    before = a.state
    with pytest.raises(IllegalEvent, match="not the write in flight"):
        step(a.cfg, a.state, StoreFailed(write.attempt, "a second answer", 0.0))
    assert a.state is before


def test_what_is_not_a_lease_event_is_an_illegal_event() -> None:
    [a] = Sim(1).machines
    with pytest.raises(IllegalEvent, match="not a lease event"):
        step(a.cfg, a.state, "tick")  # type: ignore[arg-type]


def test_broadcasts_carry_every_acquisition_and_renewal() -> None:
    sim = Sim(1)
    [a] = sim.machines
    sim.run(2500)
    sent = [e.record for e in a.effects if isinstance(e, Broadcast)]
    assert [r.nonce for r in sent] == list(range(len(sent))) and len(sent) >= 3


def test_a_holder_the_store_moved_past_never_overwrites_the_new_holder() -> None:
    """Found by the model: a paused holder's release that lost to a new holder must not
    be retried from the new holder's token."""
    sim = Sim(2)
    a, b = sim.machines
    sim.run(100)  # a holds, and its record names b in sync
    assert a.state.mine is not None and a.state.mine.in_sync == (b.me,)
    sim.stop(a)  # the release is in flight, but a pauses before the store sees it
    a.paused = True
    sim.run(WAIT + 500)
    assert b.state.phase is Phase.HOLDING
    a.paused = False
    sim.run(100)
    sim.stop(a)
    sim.run(100)
    stored = sim.store.read().record
    assert stored is not None and stored.holder == b.me and not stored.released


def test_a_wiped_store_is_waited_out_like_garbage() -> None:
    """The store lost the record while a holds: nobody may take it at once."""
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1500)
    a.paused = True  # the holder goes quiet, and then the store is wiped
    sim.store = type(sim.store)()
    sim.run(WAIT + 200)  # b tries, finds the store empty, and starts a whole wait
    assert b.state.phase is Phase.STANDBY
    assert any(isinstance(e, Alarm) and e.kind == "store_emptied" for e in b.effects)
    sim.run(WAIT)
    assert b.state.phase is Phase.HOLDING


def test_a_holder_retries_a_failed_renewal_soon_not_a_whole_interval_later() -> None:
    sim = Sim(1)
    [a] = sim.machines
    sim.run(1100)
    sim.store.down = True
    sim.run(TIMING.renew_ms)  # one renewal fails
    sim.store.down = False
    failed_at = a.state.last_write
    assert failed_at is not None and a.state.store_ok is False
    sim.run(TIMING.retry_ms + 100)
    assert a.state.store_ok is True and a.state.last_write is not None
    assert a.state.last_write - failed_at < TIMING.renew_ms
    assert a.state.phase is Phase.HOLDING


def test_a_renewal_confirmed_after_its_deadline_is_renewed_at_once_at_the_same_epoch() -> None:
    """A slow store (a loaded host): the holder may not act on a late confirmation, but
    the store holds its record, so it renews from it at once; it never waits a ttl to
    take a new epoch (which left nobody answering and restarted every reply)."""
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1100)
    assert a.state.phase is Phase.HOLDING and a.state.mine is not None
    epoch, nonce = a.state.mine.epoch, a.state.mine.nonce
    sim.advance(TIMING.renew_ms)
    sim.tick(a)  # the renewal goes out; the store takes longer than the window
    assert a.pending is not None and a.pending.kind == "renew"
    sim.advance(WINDOW + 50)
    assert not sim.actors()
    sim.tick(a)  # self-suspended meanwhile
    a.effects.clear()
    sim.carry_out(a)  # the late answer
    assert a.state.phase is Phase.STANDBY and not can_act(a.state, sim.now(a))
    assert Alarm("slow_store", "late answer") in a.effects
    again = a.pending
    assert again is not None and again.kind == "renew" and again.expected == a.state.mine_token
    assert (again.record.epoch, again.record.nonce) == (epoch, nonce + 2)
    sim.carry_out(a)  # answered in time: acting again, at the same epoch
    assert a.state.phase is Phase.HOLDING and can_act(a.state, sim.now(a))
    held = [e for e in a.effects if isinstance(e, LeaseChanged) and e.phase is Phase.HOLDING]
    assert held == [LeaseChanged(Phase.HOLDING, a.me, epoch, "renewed")]
    sim.run(2 * WAIT)
    assert [m.me for m in sim.actors()] == [a.me] and b.state.phase is Phase.STANDBY
    assert {e for _, _, e in sim.acted} == {epoch}


def test_a_holder_whose_store_is_always_late_lets_a_machine_answered_in_time_take_over() -> None:
    """Renewing at once after a late answer, every time, would hold the lease for ever
    and never act (each landed record restarts the standbys' wait): late twice running,
    the holder waits like a standby, and the machine the store answers in time takes
    over."""
    sim = Sim(2)
    a, b = sim.machines
    sim.run(1100)
    assert a.state.phase is Phase.HOLDING
    answer: tuple[float, Attempt, CasResult] | None = None
    end = sim.real + 10 * WAIT
    while sim.real < end and not can_act(b.state, sim.now(b)):
        for m in (a, b):
            sim.tick(m)
        if a.pending is not None:  # a's writes land at once; each answer comes late
            attempt, a.pending = a.pending, None
            result = sim.store.cas(attempt.expected, attempt.record)
            answer = (sim.real + WINDOW + 60, attempt, result)
        if answer is not None and sim.real >= answer[0]:
            sim.feed(a, StoreAnswered(answer[1], answer[2], sim.now(a)))
            answer = None
        if b.pending is not None:
            sim.carry_out(b)  # b's at once
        sim.deliver_all()
        sim.check()
        sim.advance(20)
    assert can_act(b.state, sim.now(b)), "the machine answered in time never took over"
    assert b.state.mine is not None and b.state.mine.epoch == 2


def test_an_acquire_that_fails_asks_the_store_afresh() -> None:
    sim = Sim(1)
    [a] = sim.machines
    a.state = replace(a.state, stored=sim.store.read())  # empty: token None
    sim.store.down = True
    sim.tick(a)
    sim.carry_out(a)
    assert a.state.stored is None and a.state.phase is Phase.STANDBY


def test_a_fenced_holder_stands_down_and_an_older_refusal_changes_nothing() -> None:
    sim = Sim(1)
    [a] = sim.machines
    sim.tick(a)
    sim.carry_out(a)
    assert a.state.phase is Phase.HOLDING and a.state.mine is not None
    held = a.state.mine.epoch
    older, _ = step(a.cfg, a.state, Fenced(held - 1, held, 10.0))
    assert older == a.state  # a refusal of an epoch this machine no longer acts with
    state, effects = step(a.cfg, a.state, Fenced(held, held + 1, 10.0))
    assert state.phase is Phase.STANDBY and not can_act(state, 11.0)
    assert [e.kind for e in effects if isinstance(e, Alarm)] == ["fenced"]
    assert any(isinstance(e, LeaseChanged) and e.phase is Phase.STANDBY for e in effects)
    assert state.floor == a.state.floor  # the sink's word only explains, never raises it


# --- the in-sync set: who may take over by itself -----------------------------------------


def test_a_standby_out_of_sync_never_takes_over_by_itself_until_forced() -> None:
    sim = Sim(2, sync_all=False)
    a, b = sim.machines
    sim.run(500)
    assert a.state.mine is not None and a.state.mine.in_sync == ()
    a.paused = True
    sim.run(3 * WAIT)
    assert b.state.phase is Phase.STANDBY and not sim.actors()  # nobody: liveness given up
    sim.feed(b, TakeoverForced(sim.now(b)))
    sim.run(500)
    assert b.state.phase is Phase.HOLDING and b.state.mine and b.state.mine.epoch == 2


def test_the_holder_renews_at_once_with_the_in_sync_set_it_wants_and_a_standby_in_it_may_take_over(
) -> None:  # fmt: skip
    sim = Sim(3, sync_all=False)
    a, b, c = sim.machines
    sim.run(500)
    effects = sim.feed(a, InSyncWanted((b.me, a.me), sim.now(a), 1.7e9))
    assert kinds(effects) == ["WriteLease"]  # at once, not at the next renewal
    sim.carry_out(a)
    sim.deliver_all()
    assert a.state.mine is not None and a.state.mine.in_sync == (b.me,)  # never itself
    assert sim.store.read().record == a.state.mine
    a.paused = True
    sim.run(WAIT + 500)
    assert holder(b.state) == b.me and holder(c.state) == b.me
    # the new holder's record names the old set less itself: nobody, here
    assert b.state.mine is not None and b.state.mine.in_sync == ()


def test_a_new_holder_inherits_the_in_sync_set_less_itself() -> None:
    sim = Sim(3)
    a, b, c = sim.machines
    sim.run(500)
    assert a.state.mine is not None and set(a.state.mine.in_sync) == {b.me, c.me}
    a.paused = True
    sim.sync_all = False
    sim.run(WAIT + 500)
    [new] = sim.actors()
    other = c if new is b else b
    assert new.state.mine is not None and new.state.mine.in_sync == (other.me,)


def test_a_yield_names_its_target_in_sync_so_it_may_acquire() -> None:
    sim = Sim(2, sync_all=False)
    a, b = sim.machines
    sim.run(500)
    yield_to(sim, a, b)
    sim.carry_out(a)
    tomb = sim.store.read().record
    assert tomb is not None and tomb.released and tomb.in_sync == (b.me,)
    sim.deliver_all()
    sim.run(200)
    assert holder(b.state) == b.me and b.state.phase is Phase.HOLDING


def test_a_standby_ignores_an_in_sync_wish() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(500)
    before = b.state
    assert sim.feed(b, InSyncWanted((a.me,), sim.now(b), 1.7e9)) == []
    assert b.state == before


def test_a_standby_that_missed_the_record_naming_it_in_sync_reads_the_store_and_takes_over(
) -> None:  # fmt: skip
    sim = Sim(2, sync_all=False)
    a, b = sim.machines
    sim.run(500)
    sim.feed(a, InSyncWanted((b.me,), sim.now(a), 1.7e9))
    sim.carry_out(a)
    sim.wire.clear()  # b never hears of the record that names it
    a.paused = True
    assert b.state.known is not None and b.state.known.in_sync == ()
    # it learns the record only by reading, so it waits out a whole ttl from then
    sim.run(2 * WAIT + 1000)
    assert any(isinstance(e, WriteLease) and e.attempt.kind == "read" for e in b.effects)
    assert holder(b.state) == b.me and b.state.mine is not None and b.state.mine.epoch == 2


def test_a_standby_out_of_sync_only_reads_and_never_writes() -> None:
    sim = Sim(2, sync_all=False)
    a, b = sim.machines
    sim.run(500)
    a.paused = True
    b.effects.clear()
    sim.run(5 * WAIT)
    writes = [e.attempt.kind for e in b.effects if isinstance(e, WriteLease)]
    assert writes and set(writes) == {"read"}
    assert sim.store.read().record == a.state.mine  # the store still holds a's record


def test_a_standby_that_missed_the_news_reads_the_store_when_asked_who_holds() -> None:
    # a yields to b while c hears nothing of it; a wakeup on c asks a, which refuses:
    # c looks the lease up at once instead of waiting for word from b
    sim = Sim(3)
    a, b, c = sim.machines
    sim.run(500)
    c.paused = True
    sim.feed(a, YieldRequested(b.me, sim.now(a), 1.7e9))
    sim.run(2 * WAIT)
    sim.wire = [w for w in sim.wire if w[0] != c.me]  # everything to c was lost
    c.paused = False
    assert holder(b.state) == b.me and holder(c.state) == a.me
    assert sim.feed(b, LookUpAsked(sim.now(b), 1.7e9)) == []  # the holder knows
    assert kinds(sim.feed(c, LookUpAsked(sim.now(c), 1.7e9))) == ["WriteLease"]
    assert c.pending is not None and c.pending.kind == "read"
    assert sim.feed(c, LookUpAsked(sim.now(c), 1.7e9)) == []  # one look at a time
    sim.carry_out(c)
    assert holder(c.state) == b.me and c.state.phase is Phase.STANDBY
    changed = [e for e in c.effects if isinstance(e, LeaseChanged)]
    assert changed[-1] == LeaseChanged(Phase.STANDBY, b.me, b.state.mine.epoch, "holder changed")  # type: ignore[union-attr]
    assert sim.store.read().record == b.state.mine  # a read wrote nothing
