"""Read-only queries on a FencedLease state (baton.core.lease): may this machine act, who
holds the lease at which epoch, when may a standby try to acquire, whom may the store
name in sync. Pure functions of (config, state, now); no clock of their own.

Invariants:
- Nothing here changes a state; baton.core.lease.step alone does.
- ``can_act(state, now)`` is true only while HOLDING and now < deadline.
"""

from __future__ import annotations

from baton.core.lease_types import LeaseConfig, LeaseState, Phase


def can_act(state: LeaseState, now: float) -> bool:
    """May this machine act as holder now (poll, reply, write shared state)?"""
    return state.phase is Phase.HOLDING and state.deadline is not None and now < state.deadline


def holder(state: LeaseState) -> str | None:
    known = state.known
    return None if known is None or known.released else known.holder


def epoch(state: LeaseState) -> int:
    return 0 if state.known is None else state.known.epoch


def takeover_at(cfg: LeaseConfig, state: LeaseState) -> float | None:
    """Local ms from which this standby may try to acquire (None: at once)."""
    known = state.known
    if known is None or known.released or state.seen_at is None:
        base = None
    else:
        base = state.seen_at + cfg.timing.standby_wait(known.ttl_ms)
    if state.garbage_since is not None:  # whoever may hold it, with the longest ttl seen
        ttl = max(cfg.timing.ttl_ms, 0 if known is None else known.ttl_ms)
        garbage = state.garbage_since + cfg.timing.standby_wait(ttl)
        base = garbage if base is None else max(base, garbage)
    return base


def may_name(s: LeaseState) -> tuple[str, ...]:
    """HOLDING: every standby the store may name in sync now or once this machine's
    writes land (its confirmed record, the write in flight, writes whose answer was
    lost). A holder waits on all of them before a reply leaves."""
    if s.phase is not Phase.HOLDING or s.mine is None:
        return ()
    records = [s.mine, *(a.record for a in s.unsure)]
    if s.inflight is not None:
        records.append(s.inflight.record)
    wanted = set(s.want_in_sync or ())  # the next renewal writes it
    return tuple(sorted(wanted | {m for r in records for m in r.in_sync}))


def named_in_store(cfg: LeaseConfig, s: LeaseState) -> bool:
    """Does what this machine knows of the store let it take over by itself (as holder
    or named in sync; or nothing readable stored)? A forced takeover does not count."""
    stored = s.stored.record if s.stored is not None else None
    return stored is None or stored.may_take_over(cfg.me)


def in_sync_ok(cfg: LeaseConfig, s: LeaseState, now: float) -> bool:
    """May this machine take the lease over by itself (it is in the stored record's
    in-sync set, or holds it, or a takeover was forced, or nothing readable is stored)?"""
    stored = s.stored.record if s.stored is not None else None
    return stored is None or stored.may_take_over(cfg.me) or now < s.forced_until
