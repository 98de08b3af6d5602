"""A move asked for (sans-IO): the one validated planner behind POST /pool/transfer,
``baton pool move`` and "move this to the mini" (docs/DESIGN.md, "The pool").

Theory of operation. ``plan_transfer`` takes the request and what the holder knows, and
answers either a TransferPlan (the pin to set, and whether the topic must be handed
over: a per-topic handoff, its ownership epoch one up) or a TransferRefusal naming why
not. In order:

1. the target must be a member, named by nickname or machine id (``unknown_machine``);
2. the topic must be one the mesh has seen (``unknown_topic``);
3. a topic pinned where it already runs is ``already_there``; one that runs there
   unpinned is pinned, with no handoff;
4. at most BURST moves of a topic at once, then one per 1 / RATE_PER_S seconds
   (``rate_limited``), so two people (or an agent talked into it) cannot bounce a
   topic between machines;
5. a target that is not alive, or a topic with a reply in flight, is moved only when
   the request confirms it (``needs_confirm``, saying which): the first waits for the
   target, the second finishes or cancels that reply cleanly first.

Invariants:
- A plan's target is a member; a plan with ``handoff`` has an epoch one above the
  topic's current one; a refusal changes nothing but the rate limiter's bucket, and
  only ``needs_confirm`` and the ones after step 4 spend a token.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from baton.core.pool_placement import Pin, Placement, PoolMachine
from baton.core.ratelimit import RateLimiter

RATE_PER_S = 0.1  # a move of a topic every 10 s
BURST = 3


def transfer_limiter() -> RateLimiter:
    return RateLimiter(RATE_PER_S, BURST)


class MoveRefused(StrEnum):
    UNKNOWN_MACHINE = "unknown_machine"
    UNKNOWN_TOPIC = "unknown_topic"
    ALREADY_THERE = "already_there"
    RATE_LIMITED = "rate_limited"
    NEEDS_CONFIRM = "needs_confirm"


@dataclass(frozen=True)
class TransferRequest:
    topic: str
    to: str  # a nickname or a machine id
    by: str  # who asks: a machine id, or the chat user
    confirm: bool = False


@dataclass(frozen=True)
class TransferRefusal:
    code: MoveRefused
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code.value, "detail": self.detail}


@dataclass(frozen=True)
class TransferPlan:
    topic: str
    source: str | None  # where it runs now (None: nowhere)
    target: str
    pin: Pin
    handoff: bool  # the topic moves (else it is only pinned where it runs)
    epoch: int  # its ownership epoch once planned

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "from": self.source,
            "to": self.target,
            "handoff": self.handoff,
            "epoch": self.epoch,
        }


def resolve(to: str, machines: Mapping[str, PoolMachine]) -> PoolMachine | None:
    """The member ``to`` names: a machine id, else a nickname."""
    if to in machines:
        return machines[to]
    return next((m for m in machines.values() if m.nickname == to), None)


def plan_transfer(
    request: TransferRequest,
    *,
    machines: Mapping[str, PoolMachine],
    known_topics: Container[str],
    placement: Placement | None,
    pin: Pin | None,
    in_flight: bool,
    limiter: RateLimiter,
    now_ms: float,
    wall_s: float,
    ttl_ms: int,
) -> TransferPlan | TransferRefusal:
    target = resolve(request.to, machines)
    if target is None:
        return TransferRefusal(MoveRefused.UNKNOWN_MACHINE, f"no member is named {request.to!r}")
    topic = request.topic
    if topic not in known_topics:
        return TransferRefusal(MoveRefused.UNKNOWN_TOPIC, f"no topic {topic!r} in this mesh")
    runs_there = placement is not None and placement.machine_id == target.machine_id
    if runs_there and pin is not None and pin.machine_id == target.machine_id:
        return TransferRefusal(
            MoveRefused.ALREADY_THERE, f"topic {topic!r} is pinned to {target.nickname} already"
        )
    if not limiter.allow(topic, now_ms / 1000):
        every = round(1 / RATE_PER_S)
        return TransferRefusal(
            MoveRefused.RATE_LIMITED, f"topic {topic!r} moved too often: once every {every} s"
        )
    if not request.confirm:
        if not target.alive(now_ms, ttl_ms):
            return TransferRefusal(
                MoveRefused.NEEDS_CONFIRM,
                f"{target.nickname} is offline: confirm to pin {topic!r} there, and it waits",
            )
        if in_flight and not runs_there:
            return TransferRefusal(
                MoveRefused.NEEDS_CONFIRM,
                f"a reply of {topic!r} is in flight: confirm to move it once that is done",
            )
    epoch = 0 if placement is None else placement.epoch
    return TransferPlan(
        topic=topic,
        source=None if placement is None else placement.machine_id,
        target=target.machine_id,
        pin=Pin(topic, target.machine_id, wall_s, request.by),
        handoff=not runs_there,
        epoch=epoch if runs_there else epoch + 1,
    )
