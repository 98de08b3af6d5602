"""The pool's placement (sans-IO): which machine runs each topic, and why
(docs/DESIGN.md, "The pool"; the shared design's MachinePoolRegistry and
TopicPlacementDescription).

Theory of operation. In the pool the holder stays the single door in and out, and each
topic's agent runs on the machine the topic is placed on, as a shard runs on a region in
Akka Cluster Sharding (the holder is the coordinator). ``place`` decides one topic:

1. **pinned**: someone moved it deliberately (TopicPlacementPinStore). The pin holds
   even while its machine is dead: the topic waits for it, and the description says so
   (``waiting``); an operator who will not wait unpins or moves it.
2. **sticky**: a topic stays on the machine that runs it while that machine is alive.
3. **least-loaded**: otherwise the alive machine with the fewest topics (ties: the
   lower machine id), and the topic's ownership epoch goes up by one.
4. **unowned**: no machine is alive (or it was never placed and nothing asks yet).

A machine is alive while the holder heard from it within the lease's ttl, measured on
the holder's own clock (``last_heard_ms``): a machine that leaves, dies or is cut off
has its topics placed elsewhere after a ttl, as a holder's lease would pass.

Each placement carries the topic's **ownership epoch**: it goes up by one whenever the
topic gets a new owner (never for a sticky one), so a result from a machine that no
longer owns the topic, whose epoch is older, is refused (``owns``).

Invariants:
- ``place`` never gives a topic to a machine that is not in ``machines``; it gives it to
  a dead one only for a pin (and says ``waiting``).
- The epoch of ``place``'s answer is the current one if and only if the owner stays the
  same; otherwise it is current + 1. Epochs never go down.
- ``place_all`` counts each placement it makes into the loads of the ones after it, so a
  burst of new topics spreads instead of piling on one machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why a topic runs where it does (GET /pool/placement)."""

    PINNED = "pinned"  # someone moved it deliberately
    PLACED = "placed"  # the SessionRouter put it there, for load
    UNOWNED = "unowned"  # it runs nowhere yet


@dataclass(frozen=True)
class PoolMachine:
    """One machine as the holder sees it (the MachinePoolRegistry's entry)."""

    machine_id: str
    nickname: str
    load: int = 0  # the topics placed on it
    last_heard_ms: float | None = None  # the holder's monotonic clock; None: never

    def alive(self, now_ms: float, ttl_ms: int) -> bool:
        return self.last_heard_ms is not None and now_ms - self.last_heard_ms <= ttl_ms


@dataclass(frozen=True)
class Pin:
    """A deliberate placement: ``topic`` runs on ``machine_id`` until unpinned."""

    topic: str
    machine_id: str
    at: float  # wall-clock seconds, when it was set
    by: str  # who asked (an operator's machine, or a chat user)


@dataclass(frozen=True)
class Placement:
    """Where ``topic`` runs (``machine_id`` None: nowhere), why, and its ownership epoch."""

    topic: str
    machine_id: str | None
    reason: Reason
    epoch: int = 0
    waiting: bool = False  # pinned to a machine that is not alive: the topic waits

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)


def fields_json(value: Any) -> dict[str, Any]:
    """A frozen dataclass of plain fields as JSON (an enum as its value)."""
    return {
        f.name: (v.value if isinstance(v := getattr(value, f.name), StrEnum) else v)
        for f in fields(value)
    }


def owns(placement: Placement | None, machine_id: str, epoch: int) -> bool:
    """Whether a result ``machine_id`` made at ownership ``epoch`` may be taken: only
    the current owner's, at the current epoch."""
    return placement is not None and (placement.machine_id, placement.epoch) == (machine_id, epoch)


def place(
    topic: str,
    current: Placement | None,
    pin: Pin | None,
    machines: Mapping[str, PoolMachine],
    *,
    now_ms: float,
    ttl_ms: int,
) -> Placement:
    """Where ``topic`` runs now (see the module's docstring)."""
    epoch = 0 if current is None else current.epoch
    owner = None if current is None else current.machine_id

    def to(machine_id: str | None, reason: Reason, waiting: bool = False) -> Placement:
        moved = machine_id is not None and machine_id != owner
        return Placement(topic, machine_id, reason, epoch + 1 if moved else epoch, waiting)

    if pin is not None and pin.topic == topic and pin.machine_id in machines:
        pinned_alive = machines[pin.machine_id].alive(now_ms, ttl_ms)
        return to(pin.machine_id, Reason.PINNED, waiting=not pinned_alive)
    if owner is not None and owner in machines and machines[owner].alive(now_ms, ttl_ms):
        return to(owner, Reason.PLACED)
    alive = [m for m in machines.values() if m.alive(now_ms, ttl_ms)]
    if not alive:
        return Placement(topic, None, Reason.UNOWNED, epoch)
    least = min(alive, key=lambda m: (m.load, m.machine_id))
    return to(least.machine_id, Reason.PLACED)


def place_all(
    topics: Iterable[str],
    current: Mapping[str, Placement],
    pins: Mapping[str, Pin],
    machines: Mapping[str, PoolMachine],
    *,
    now_ms: float,
    ttl_ms: int,
) -> dict[str, Placement]:
    """``place`` for each topic, in order, each new placement counted into the loads of
    the machines for the ones after it."""
    loads = dict(machines)
    out: dict[str, Placement] = {}
    for topic in topics:
        before = current.get(topic)
        placed = place(topic, before, pins.get(topic), loads, now_ms=now_ms, ttl_ms=ttl_ms)
        out[topic] = placed
        if before is not None and before.machine_id != placed.machine_id:
            _add(loads, before.machine_id, -1)
        if before is None or before.machine_id != placed.machine_id:
            _add(loads, placed.machine_id, 1)
    return out


def _add(loads: dict[str, PoolMachine], machine_id: str | None, n: int) -> None:
    if machine_id in loads:
        m = loads[machine_id]
        loads[machine_id] = replace(m, load=max(0, m.load + n))


@dataclass(frozen=True)
class TopicPlacementDescription:
    """What GET /pool/placement answers for a topic: where it runs, its nickname, the
    lease holder, and why."""

    topic: str
    machine_id: str | None
    nickname: str | None
    holder: str | None
    holder_nickname: str | None
    reason: Reason
    epoch: int
    waiting: bool
    alive: bool

    @classmethod
    def of(
        cls,
        topic: str,
        placement: Placement | None,
        machines: Mapping[str, PoolMachine],
        holder: str | None,
        *,
        now_ms: float,
        ttl_ms: int,
    ) -> TopicPlacementDescription:
        where = placement or Placement(topic, None, Reason.UNOWNED)
        machine = machines.get(where.machine_id or "")
        boss = machines.get(holder or "")
        return cls(
            topic=topic,
            machine_id=where.machine_id,
            nickname=None if machine is None else machine.nickname,
            holder=holder,
            holder_nickname=None if boss is None else boss.nickname,
            reason=where.reason,
            epoch=where.epoch,
            waiting=where.waiting,
            alive=machine is not None and machine.alive(now_ms, ttl_ms),
        )

    def to_json(self) -> dict[str, Any]:
        return fields_json(self)
