"""A chaos campaign's fault schedule, from a seed alone: the same seed, count, spacing and
ttl give the same schedule, fault for fault (no I/O, no clock; a test holds it to that).

A schedule is a list of Faults, one after the other, ``every_s`` apart (with jitter).
Targets are roles ("holder", "standby"), resolved when the fault is applied, because
who holds depends on everything before; ``pick`` chooses among standbys the same way
each replay. Durations are in seconds and scale with the lease ttl where it matters:
a pause or an isolation "past the lease" lasts 1.3 to 2 ttls.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

KINDS = (
    "kill",  # kill -9 the node; its supervisor restarts it
    "kill_whole",  # kill -9 supervisor and node; `baton up` again after duration
    "pause",  # SIGSTOP supervisor and node for duration, then SIGCONT
    "isolate",  # cut the target from every other machine (fault hooks), then heal
    "cut",  # cut the target from one other machine both ways, then heal
    "one_way",  # the target's frames never reach one other machine, then heal
    "clock_jump",  # the target's wall clock jumps by offset for duration, then back
    "handoff",  # `baton wakeup` on a standby
    "store_slow",  # every lease write waits delay for duration
    "store_fail",  # every lease write is refused for duration
    "down_back",  # `baton down` for duration while the others answer, `baton up`, then
    # `baton wakeup` on it once it is in sync again: it holds with what it missed
)


@dataclass(frozen=True)
class Fault:
    at_s: float  # seconds after the campaign's load started
    kind: str
    target: str  # "holder" | "standby" | "any"
    pick: int  # which standby / other machine, modulo how many there are
    duration_s: float
    amount: str = ""  # clock offset ("+7m") or store delay ("1.2")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule(seed: int, count: int, every_s: float, ttl_s: float) -> list[Fault]:
    rng = random.Random(seed)
    faults = []
    at = every_s
    for _ in range(count):
        kind = rng.choice(KINDS)
        target = {"handoff": "standby", "store_slow": "any", "store_fail": "any"}.get(
            kind, rng.choice(("holder", "holder", "standby"))
        )
        duration, amount = _shape(rng, kind, ttl_s)
        faults.append(Fault(round(at, 2), kind, target, rng.randrange(12), duration, amount))
        at += duration + every_s * rng.uniform(0.7, 1.3)
    return faults


def _shape(rng: random.Random, kind: str, ttl_s: float) -> tuple[float, str]:
    """(duration_s, amount) of one fault of ``kind``."""
    if kind in ("pause", "isolate", "kill_whole", "down_back"):
        return round(ttl_s * rng.uniform(1.3, 2.0), 2), ""
    if kind in ("cut", "one_way"):
        return round(ttl_s * rng.uniform(0.5, 2.0), 2), ""
    if kind == "clock_jump":
        minutes = rng.choice((-1, 1)) * rng.randint(1, 30)
        return round(ttl_s * rng.uniform(0.5, 1.5), 2), f"{minutes:+d}m"
    if kind == "store_slow":
        return round(ttl_s * rng.uniform(0.5, 1.5), 2), f"{rng.uniform(0.2, 1.5):.2f}"
    if kind == "store_fail":
        return round(ttl_s * rng.uniform(0.3, 1.5), 2), ""
    return 0.0, ""  # kill, handoff: instant
