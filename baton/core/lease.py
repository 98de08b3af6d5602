"""FencedLease: who is awake, decided by the store's compare-and-swap; no clock of its own.

Theory of operation. A machine is STANDBY or HOLDING. A standby acquires when nobody
holds (nothing stored, or a release tombstone) or when the lease has surely expired in
its own clock frame: no newer record seen for ``ttl * (1 + rho)`` local ms. It acquires
by CAS from the store's token to a record with epoch + 1, nonce 0. The holder renews
every ``renew_ms`` by CAS from its own record to nonce + 1, and may act only until

    deadline = t_sent + ttl * (1 - rho) - margin

where t_sent is when it *sent* its last successful CAS (local ms). With clock rates
within rho of real time, the holder stops before real time t_sent + ttl, and a standby
that saw the record no earlier than t_sent waits at least until then: the two never
act at once. Timeouts only give liveness; safety rests on the CAS (one winner per
token) and on sinks refusing epochs below the highest they have seen.

Events (past tense) go into ``step(cfg, state, event) -> (state, effects)``:

    LeaseTicked(now, wall)            time passed: suspend, renew or acquire if due
    RecordSeen(record, now)      a checked record from a peer (signature and membership
                                 are core.lease_record.check_record's job)
    StoreAnswered(attempt, result, now)   the store's answer to our CAS
    StoreFailed(attempt, detail, now)     the store could not be asked: outcome unknown
    StopRequested(now, wall)     clean shutdown: stop acting, write a release tombstone
    YieldRequested(to, now, wall)  a planned handoff: stop acting, release the lease to
                                 ``to`` alone, and hold off acquiring for a whole ttl
    Fenced(epoch, highest, now)  a sink refused our side effect as stale: someone acted
                                 with a higher epoch, so a holder of ``epoch`` stands down
    InSyncWanted(in_sync, now, wall)  the holder's delivery wants another in-sync set:
                                 renewed at once with it (the record names who is in sync)
    TakeoverForced(now)          `wakeup --force`: acquire though not in the in-sync set
    LookUpAsked(now, wall)       a standby reads the store at once (who holds now?)

Effects the actor carries out: WriteLease (a CAS), Broadcast / SendTo (push a record
over the wire), LeaseChanged (phase or holder changed), Alarm (log, count, status),
Dropped (a peer's record refused: count it).

Invariants:
- ``can_act(state, now)`` is true only while HOLDING and now < deadline.
- The epoch of this machine's records only grows; an acquisition is one more than
  the highest epoch it has seen anywhere valid (``floor``) or in the store.
- Renewals and releases CAS from the token of this machine's own confirmed record,
  never from whatever it saw last: a holder the store has moved past cannot overwrite
  the new holder's record. Only an acquisition CASes from someone else's token.
- At most one store write is in flight. A write whose answer was lost stays "unsure":
  if the store later shows it, it counts as done, from its own t_sent. A renewal
  confirmed after its deadline is not acted on, but renewed at once from its token:
  the same epoch, as after a self-suspension (no new term for a slow store). Once in
  a row only: late again, the machine waits like any standby before it acquires.
- Seeing a valid record with a higher epoch while HOLDING demotes at once. Two valid
  records with one epoch and different holders raise a split-brain alarm, and the
  holder whose machine id sorts lower stands down.
- Wall time (``wall``) only stamps issued_at for people; nothing compares it.
- Only a machine the stored record allows (``may_take_over``: its holder, or a standby
  in its in-sync set) acquires after it expires or is released, unless a takeover was
  forced; an empty or garbage store can be taken by anyone (no one is known to have
  sent anything). A new holder's record names the old record's in-sync set less
  itself (they hold every marker the old holder sent, and it has sent nothing yet); a
  yield's tombstone adds its target, who caught up before it acked.
- A machine that cannot speak the protocol version the mesh runs at (``unable``, told by
  ProtocolChecked) never acquires, not even forced (baton.core.versions); an acquisition
  in flight when it learns so is released as it lands, never acted on. A holder keeps
  renewing: it is deposed only by a new holder.
"""

from __future__ import annotations

from dataclasses import replace

from baton.core.errors import IllegalEvent, ReplayedLease, StaleLease
from baton.core.lease_queries import can_act, epoch, holder, in_sync_ok, may_name, takeover_at
from baton.core.lease_record import LeaseRecord, sign_record
from baton.core.lease_store import CasResult, Stored
from baton.core.lease_types import (
    Alarm,
    Attempt,
    Broadcast,
    Dropped,
    Effect,
    Event,
    Fenced,
    InSyncWanted,
    LeaseChanged,
    LeaseConfig,
    LeaseState,
    LeaseTicked,
    LookUpAsked,
    Phase,
    ProtocolChecked,
    RecordSeen,
    SendTo,
    StopRequested,
    StoreAnswered,
    StoreFailed,
    TakeoverForced,
    Timing,
    WriteLease,
    YieldRequested,
)

# The types and queries are part of this module's interface (callers import them from here).
__all__ = [
    "Alarm",
    "Attempt",
    "Broadcast",
    "Dropped",
    "Effect",
    "Event",
    "Fenced",
    "InSyncWanted",
    "LeaseChanged",
    "LeaseConfig",
    "LeaseState",
    "LeaseTicked",
    "LookUpAsked",
    "Phase",
    "ProtocolChecked",
    "RecordSeen",
    "SendTo",
    "StopRequested",
    "StoreAnswered",
    "StoreFailed",
    "TakeoverForced",
    "Timing",
    "WriteLease",
    "YieldRequested",
    "can_act",
    "epoch",
    "holder",
    "in_sync_ok",
    "may_name",
    "step",
    "takeover_at",
]

UNSURE_KEPT = 8
_DONE = {"acquire": "acquired", "renew": "renewed", "release": "released"}  # and "read"


# --- the step ----------------------------------------------------------------------


def step(cfg: LeaseConfig, s: LeaseState, event: Event) -> tuple[LeaseState, list[Effect]]:
    match event:
        case LeaseTicked(now=now, wall=wall):
            return _tick(cfg, s, now, wall)
        case RecordSeen(record=record, now=now, token=token):
            return _seen(cfg, s, record, now, token)
        case StoreAnswered(attempt=attempt, result=result, now=now):
            _check_inflight(s, attempt)
            return _answered(cfg, replace(s, inflight=None, store_ok=True), attempt, result, now)
        case StoreFailed(attempt=attempt, detail=detail, now=now):
            _check_inflight(s, attempt)
            unsure = (*s.unsure, attempt)[-UNSURE_KEPT:]
            s = replace(
                s, inflight=None, unsure=unsure, store_ok=False, next_try=now + cfg.timing.retry_ms
            )
            if attempt.kind == "acquire":  # its token may be what failed: ask afresh next
                s = replace(s, stored=None)
            return s, [Alarm("store_unavailable", detail)]
        case StopRequested(now=now, wall=wall):
            return _stop(cfg, s, now, wall)
        case Fenced(epoch=fenced, highest=highest, now=now):
            return _fenced(s, fenced, highest, now)
        case YieldRequested(to=to, now=now, wall=wall):
            return _yield(cfg, s, to, now, wall)
        case InSyncWanted(in_sync=in_sync, now=now, wall=wall):
            if s.phase is not Phase.HOLDING:
                return s, []
            wanted = tuple(sorted(set(in_sync) - {cfg.me}))
            return _tick(cfg, replace(s, want_in_sync=wanted), now, wall)
        case TakeoverForced(now=now):
            return replace(s, forced_until=now + 2 * cfg.timing.ttl_ms), []
        case ProtocolChecked(unable=why):
            said: list[Effect] = []
            if why is not None and why != s.unable:
                said.append(Alarm("version_skew", why))
            return replace(s, unable=why), said
        case LookUpAsked(now=now, wall=wall):
            if s.phase is Phase.HOLDING or s.inflight is not None or s.stopping:
                return s, []  # a holder knows; an answer on its way tells us anyway
            probe = LeaseRecord(cfg.me, s.floor + 1, 0, cfg.timing.ttl_ms, wall)
            return _write(cfg, s, "read", probe, now)
    raise IllegalEvent(f"not a lease event: {event!r}")


def _fenced(
    s: LeaseState, fenced: int, highest: int, now: float
) -> tuple[LeaseState, list[Effect]]:
    """The sink is not signed, so its ``highest`` only explains; it never raises the
    floor. A refusal for an epoch older than the one now held changes nothing."""
    if s.phase is not Phase.HOLDING or s.mine is None or fenced < s.mine.epoch:
        return s, []
    detail = f"a sink refused epoch {fenced}: it has seen epoch {highest}"
    s, effects = _demote(s, now, f"fenced: {detail}")
    return s, [Alarm("fenced", detail), *effects]


def _check_inflight(s: LeaseState, attempt: Attempt) -> None:
    if s.inflight != attempt:
        raise IllegalEvent(f"an answer for {attempt.kind} that is not the write in flight")


def _demote(s: LeaseState, now: float, reason: str) -> tuple[LeaseState, list[Effect]]:
    if s.phase is not Phase.HOLDING:
        return s, []
    s = replace(s, phase=Phase.STANDBY, deadline=None, seen_at=now, want_in_sync=None)
    return s, [LeaseChanged(Phase.STANDBY, holder(s), epoch(s), reason)]


def _write(
    cfg: LeaseConfig, s: LeaseState, kind: str, record: LeaseRecord, now: float
) -> tuple[LeaseState, list[Effect]]:
    # An acquisition CASes from whatever the store holds (it has surely expired); a
    # renewal or release from our own record only, so it fails if the store moved on.
    theirs = None if s.stored is None else s.stored.token
    token = theirs if kind == "acquire" else s.mine_token
    attempt = Attempt(kind, token, sign_record(record, cfg.signer), now)
    return replace(s, inflight=attempt, last_write=now), [WriteLease(attempt)]


def _tick(
    cfg: LeaseConfig, s: LeaseState, now: float, wall: float
) -> tuple[LeaseState, list[Effect]]:
    effects: list[Effect] = []
    if s.phase is Phase.HOLDING and not can_act(s, now):
        s, effects = _demote(s, now, "self-suspended: no confirmed renewal before the deadline")
    if s.inflight is not None or s.stopping or now < s.next_try:
        return s, effects
    t = cfg.timing
    if s.phase is Phase.HOLDING and s.mine is not None:
        failed = s.store_ok is False  # then retry at next_try, not a whole interval later
        in_sync = s.mine.in_sync if s.want_in_sync is None else s.want_in_sync
        changed = in_sync != s.mine.in_sync
        if s.last_write is None or now - s.last_write >= t.renew_ms or failed or changed:
            renewal = replace(
                s.mine, nonce=s.mine.nonce + 1, ttl_ms=t.ttl_ms, issued_at=wall, in_sync=in_sync
            )
            s, more = _write(cfg, s, "renew", renewal, now)
            effects += more
        return s, effects
    due = takeover_at(cfg, s)
    if now < s.hold_off or (due is not None and now < due) or s.unable is not None:
        return s, effects  # (one that cannot speak the mesh's protocol never acquires)
    stored = s.stored.record if s.stored is not None else None
    base = max(s.floor, 0 if stored is None else stored.epoch)
    heirs = () if stored is None else tuple(m for m in stored.in_sync if m != cfg.me)
    record = LeaseRecord(cfg.me, base + 1, 0, t.ttl_ms, wall, in_sync=heirs)
    if in_sync_ok(cfg, s, now):
        s, more = _write(cfg, s, "acquire", record, now)
    else:
        # What we know does not name us in sync; the store may (a record we missed):
        # read it, write nothing, and decide again on what it holds.
        s, more = _write(cfg, s, "read", record, now)
        s = replace(s, next_try=now + t.renew_ms)  # a look per renew interval, no more
    return s, effects + more


def _newer(s: LeaseState, record: LeaseRecord, now: float) -> LeaseState:
    """Learn ``record`` if it is newer than what we know (and restart the standby wait)."""
    if s.known is not None and record.order <= s.known.order:
        return s
    return replace(s, known=record, seen_at=now, floor=max(s.floor, record.epoch))


def _seen(
    cfg: LeaseConfig, s: LeaseState, record: LeaseRecord, now: float, token: str | None
) -> tuple[LeaseState, list[Effect]]:
    effects: list[Effect] = []
    mine = s.mine if s.phase is Phase.HOLDING else None
    claims = mine is not None and record.holder != cfg.me and not record.released
    if claims and mine is not None and record.epoch < mine.epoch:
        detail = f"{record.holder} claims epoch {record.epoch}; this machine holds {mine.epoch}"
        effects += [Alarm("stale_holder", detail), SendTo(record.holder, mine)]
    if record.epoch < s.floor:
        stale = StaleLease(f"epoch {record.epoch} of {record.holder} is below {s.floor}")
        return s, [*effects, Dropped(stale)]
    last = dict(s.last_from)
    seen = last.get(record.holder)
    if seen is not None and record.order <= seen:
        replayed = ReplayedLease(f"{record!r} is not newer than {seen} from {record.holder}")
        return s, [*effects, Dropped(replayed)]
    last[record.holder] = record.order
    s = replace(s, last_from=tuple(sorted(last.items())))
    s, effects = _learn(cfg, s, record, now, effects)
    if s.known == record and record.holder != cfg.me:
        s = replace(s, hold_off=0.0)  # the lease moved on since we yielded
    if token and s.known == record and record.holder != cfg.me:
        # what the store holds now, as its writer says: an acquisition CASes from it
        # directly (a wrong token only costs a failed CAS and a read)
        s = replace(s, stored=Stored(token, record), garbage_since=None)
    return s, effects


def _learn(
    cfg: LeaseConfig, s: LeaseState, record: LeaseRecord, now: float, effects: list[Effect]
) -> tuple[LeaseState, list[Effect]]:
    """A valid record from the wire or the store: demote on a higher or rival epoch."""
    before = (holder(s), epoch(s))
    known, mine = s.known, (s.mine if s.phase is Phase.HOLDING else None)
    other = record.holder != cfg.me
    reason = None
    rival = known is not None and known.epoch == record.epoch and known.holder != record.holder
    if rival and not record.released and not (known is not None and known.released):
        detail = f"{record.holder} and {known and known.holder} both claim epoch {record.epoch}"
        effects.append(Alarm("split_brain", detail))
        if mine is not None and other and cfg.me < record.holder:
            reason = "split brain: the lower machine id stands down"
    elif mine is not None and other and record.epoch > mine.epoch:
        reason = f"{record.holder} holds epoch {record.epoch}"
    s = _newer(s, record, now)
    if reason is not None:
        s, more = _demote(s, now, reason)
        return s, effects + more
    if s.phase is Phase.STANDBY and (holder(s), epoch(s)) != before:
        effects.append(LeaseChanged(Phase.STANDBY, holder(s), epoch(s), "holder changed"))
    return s, effects


def _answered(
    cfg: LeaseConfig, s: LeaseState, attempt: Attempt, result: CasResult, now: float
) -> tuple[LeaseState, list[Effect]]:
    current = result.current
    s = replace(s, stored=current)
    effects: list[Effect] = []
    # Garbage, or an empty store after we have seen a lease in it (wiped, rolled back):
    # someone may still hold a lease nobody can read, so wait a whole ttl before taking it.
    garbage = current.record is None and current.token is not None
    wiped = current.token is None and (s.known is not None or s.floor > 0)
    if garbage or wiped:
        if s.garbage_since is None:
            s = replace(s, garbage_since=now)
        if garbage:
            effects.append(Alarm("store_garbage", current.problem or "not a lease record"))
        else:
            effects.append(Alarm("store_emptied", "the store lost the lease record it held"))
    else:
        s = replace(s, garbage_since=None)
    if attempt.kind == "read":  # nothing was written: learn what the store holds
        if current.record is not None:
            return _learn(cfg, s, current.record, now, effects)
        return s, effects
    if not result.ok:
        landed = next((u for u in s.unsure if u.record == current.record), None)
        if landed is None:  # the store moved on without us: our record is gone
            s = replace(s, mine=None, mine_token=None, yield_to=None)
            s, more = _demote(s, now, "the store holds another record than ours")
            effects += more
            if current.record is not None:
                return _learn(cfg, s, current.record, now, effects)
            return s, effects
        attempt = landed  # an earlier write we never heard back about did land
    s = replace(s, unsure=())
    record = attempt.record
    if attempt.kind == "release":
        to, s = s.yield_to, replace(s, mine=None, mine_token=None, yield_to=None)
        told: Effect = (
            Broadcast(record, current.token) if to is None else SendTo(to, record, current.token)
        )
        return _newer(s, record, now), [*effects, told]
    deadline = attempt.t_sent + cfg.timing.holder_window
    s = _newer(replace(s, mine=record, mine_token=current.token), record, now)
    # A renewal landed while stopping or yielding, or an acquisition after this machine
    # learnt it cannot speak the mesh's protocol: release it, never acting on it.
    if s.stopping or s.yield_to or (attempt.kind == "acquire" and s.unable is not None):
        s, more = _write(cfg, s, "release", _tombstone(s, record), now)
        return s, [*effects, *more]
    effects.append(Broadcast(record, current.token))
    if now >= deadline:  # the store answered too late to act on it; the lease runs out
        s, more = _demote(s, now, "the store confirmed the renewal after its deadline")
        effects += [*more, Alarm("slow_store", "late answer")]
        s = replace(s, deadline=None)
        if s.late:  # late twice running: sit out a standby wait like everyone else (a
            return s, effects  # machine the store answers in time may take over)
        # The store holds our record: renew it at once, at the same epoch, as after a
        # self-suspension. Waiting out a ttl to acquire the next epoch left a loaded host
        # with no holder for seconds and restarted every reply in flight. Only once in a
        # row: renewing for ever, each late, would hold the lease and never act.
        again = replace(record, nonce=record.nonce + 1, ttl_ms=cfg.timing.ttl_ms)
        s, more = _write(cfg, replace(s, late=True), "renew", again, now)
        return s, [*effects, *more]
    was = s.phase
    s = replace(s, phase=Phase.HOLDING, deadline=deadline, late=False)
    if was is not Phase.HOLDING:
        effects.append(LeaseChanged(Phase.HOLDING, cfg.me, record.epoch, _DONE[attempt.kind]))
    return s, effects


def _stop(
    cfg: LeaseConfig, s: LeaseState, now: float, wall: float
) -> tuple[LeaseState, list[Effect]]:
    s, effects = _demote(replace(s, stopping=True), now, "released: clean shutdown")
    s, more = _release(cfg, s, now, wall)
    return s, [*effects, *more]


def _release(
    cfg: LeaseConfig, s: LeaseState, now: float, wall: float
) -> tuple[LeaseState, list[Effect]]:
    """Write the release tombstone of our record, unless a write is in flight (its
    answer releases, above) or there is no record of ours."""
    mine = s.mine
    if mine is None or s.inflight is not None:
        return s, []
    return _write(cfg, s, "release", _tombstone(s, mine, wall), now)


def _yield(
    cfg: LeaseConfig, s: LeaseState, to: str, now: float, wall: float
) -> tuple[LeaseState, list[Effect]]:
    """Stand down at once, then release to ``to``. This machine does not try to acquire
    again for a whole standby wait, so ``to`` (told the tombstone and its token directly)
    acquires first; if it does not, the lease is taken as after any expiry."""
    if s.phase is not Phase.HOLDING or s.mine is None or s.stopping:
        return s, [Alarm("yield_refused", f"asked to yield to {to} while not holding")]
    s, effects = _demote(s, now, f"yielded to {to}: planned handoff")
    hold_off = now + cfg.timing.standby_wait(cfg.timing.ttl_ms)
    s = replace(s, yield_to=to, hold_off=hold_off)
    s, more = _release(cfg, s, now, wall)
    return s, [*effects, *more]


def _tombstone(s: LeaseState, mine: LeaseRecord, wall: float | None = None) -> LeaseRecord:
    """The release of ``mine``; a yield's names its target in sync (it caught up, and
    the lease is handed to it alone)."""
    in_sync = mine.in_sync
    if s.yield_to is not None and s.yield_to != mine.holder:
        in_sync = tuple(sorted({*in_sync, s.yield_to}))
    issued = mine.issued_at if wall is None else wall
    return replace(mine, nonce=mine.nonce + 1, ttl_ms=0, issued_at=issued, in_sync=in_sync)
