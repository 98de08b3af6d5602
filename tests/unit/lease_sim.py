"""A simulated mesh for the pure lease core: machines with their own clock rates, one
MemoryLeaseStore, and a lossy wire, all driven step by step in simulated real time."""

from __future__ import annotations

from dataclasses import dataclass, field

import nacl.signing

from baton.adapters.signing import Ed25519Signer
from baton.core.errors import LeaseStoreError
from baton.core.identity import derive_machine_id
from baton.core.lease import (
    Attempt,
    Broadcast,
    Effect,
    Event,
    InSyncWanted,
    LeaseChanged,
    LeaseConfig,
    LeaseState,
    LeaseTicked,
    Phase,
    RecordSeen,
    SendTo,
    StopRequested,
    StoreAnswered,
    StoreFailed,
    Timing,
    WriteLease,
    can_act,
    step,
)
from baton.core.lease_record import LeaseRecord
from baton.core.lease_store import CasResult
from baton.stores.lease_memory import MemoryLeaseStore

TIMING = Timing.of(ttl_ms=3000, renew_ms=1000, rho=0.01)


def signer(seed: int) -> Ed25519Signer:
    key = nacl.signing.SigningKey(bytes([seed]) * 32)
    return Ed25519Signer(derive_machine_id(bytes(key.verify_key)), key)


@dataclass
class SimMachine:
    cfg: LeaseConfig
    rate: float = 1.0  # local ms per real ms
    offset: float = 0.0
    state: LeaseState = field(default_factory=LeaseState)
    paused: bool = False
    pending: Attempt | None = None  # a write handed to the store, not yet carried out
    effects: list[Effect] = field(default_factory=list)

    @property
    def me(self) -> str:
        return self.cfg.me

    def local(self, real: float) -> float:
        return self.offset + self.rate * real


class Sim:
    """``sync_all``: a new holder names every other machine in sync at once (as delivery
    does once each has caught up), so any of them may take over; False: nobody is."""

    def __init__(self, n: int = 2, rates: list[float] | None = None, sync_all: bool = True) -> None:
        self.sync_all = sync_all
        self.real = 0.0
        self.store = MemoryLeaseStore()
        rates = rates or [1.0] * n
        self.machines = [
            SimMachine(LeaseConfig(signer(i + 1).machine_id, TIMING, signer(i + 1)), rates[i])
            for i in range(n)
        ]
        self.wire: list[tuple[str, LeaseRecord, str | None]] = []  # (to, record, token)
        self.acted: list[tuple[float, str, int]] = []  # (real time, machine, epoch)
        self.acting_epoch = 0  # the highest epoch that has acted so far

    def feed(self, m: SimMachine, event: Event) -> list[Effect]:
        m.state, effects = step(m.cfg, m.state, event)
        m.effects += effects
        for effect in effects:
            match effect:
                case WriteLease(attempt=attempt):
                    m.pending = attempt
                case Broadcast(record=record, token=token):
                    self.wire += [(o.me, record, token) for o in self.machines if o is not m]
                case SendTo(machine_id=to, record=record, token=token):
                    self.wire.append((to, record, token))
        held = any(isinstance(e, LeaseChanged) and e.phase is Phase.HOLDING for e in effects)
        if held and self.sync_all:
            others = tuple(o.me for o in self.machines if o is not m)
            wall = 1.7e9 + self.real / 1000
            return effects + self.feed(m, InSyncWanted(others, self.now(m), wall))
        return effects

    def now(self, m: SimMachine) -> float:
        return m.local(self.real)

    def tick(self, m: SimMachine) -> list[Effect]:
        return self.feed(m, LeaseTicked(self.now(m), 1.7e9 + self.real / 1000))

    def carry_out(self, m: SimMachine, lose_answer: bool = False) -> None:
        """The store performs m's pending write; the answer reaches m (or is lost)."""
        attempt, m.pending = m.pending, None
        assert attempt is not None
        try:
            if attempt.kind == "read":
                result = CasResult(False, self.store.read())
            else:
                result = self.store.cas(attempt.expected, attempt.record)
        except LeaseStoreError as exc:
            self.feed(m, StoreFailed(attempt, exc.detail, self.now(m)))
            return
        if lose_answer:
            self.feed(m, StoreFailed(attempt, "answer lost", self.now(m)))
        else:
            self.feed(m, StoreAnswered(attempt, result, self.now(m)))

    def deliver(self, index: int) -> None:
        to, record, token = self.wire.pop(index)
        m = next(x for x in self.machines if x.me == to)
        self.feed(m, RecordSeen(record, self.now(m), token))

    def deliver_all(self) -> None:
        """Deliver every record in flight to a machine that is not paused."""
        paused = {m.me for m in self.machines if m.paused}
        i = 0
        while i < len(self.wire):
            if self.wire[i][0] in paused:
                i += 1
            else:
                self.deliver(i)

    def stop(self, m: SimMachine) -> None:
        self.feed(m, StopRequested(self.now(m), 1.7e9))

    def advance(self, ms: float) -> None:
        self.real += ms

    def actors(self) -> list[SimMachine]:
        """The machines that may act as holder at this real instant."""
        return [m for m in self.machines if can_act(m.state, self.now(m))]

    def run(self, ms: float, step_ms: float = 50.0) -> None:
        """Everyone healthy: tick, carry out writes, deliver the wire, for ``ms``."""
        end = self.real + ms
        while self.real < end:
            for m in self.machines:
                if not m.paused:
                    self.tick(m)
                    if m.pending is not None:
                        self.carry_out(m)
            self.deliver_all()
            self.check()
            self.advance(step_ms)

    def check(self) -> None:
        acting = self.actors()
        assert len(acting) <= 1, f"two holders at {self.real}: {[m.me for m in acting]}"
        for m in acting:
            assert m.state.mine is not None
            assert m.state.mine.epoch >= self.acting_epoch, f"an older epoch acted at {self.real}"
            self.acting_epoch = m.state.mine.epoch
            self.acted.append((self.real, m.me, m.state.mine.epoch))
