"""A rolling update's next steps (sans-IO), for `baton upgrade` (docs/DESIGN.md,
"Versions").

Theory of operation. The operator installs the new baton on each machine (pip, pipx, a
system package: never baton's job); a machine's supervisor restarts its node on it by
itself, but the awake one's waits until the role has moved. The plan says, from one
machine's view of the mesh, what is left, in order: every standby first (updated, then
back in sync), then the role handed to an updated standby in sync (`baton wakeup`
there), after which the old holder restarts by itself. So the holder role moves once,
onto a machine that runs the new version, and never onto one that cannot speak the
mesh's protocol. A target version that cannot speak the protocol the mesh runs at
cannot be rolled out without a gap: the plan is blocked and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MachineVersion:
    """One machine as the plan sees it: what it runs (None: not known yet)."""

    name: str
    running: str | None
    awake: bool
    in_sync: bool


@dataclass(frozen=True)
class UpgradeStep:
    machine: str
    action: str  # "update", "wait", "wakeup"
    detail: str


@dataclass(frozen=True)
class UpgradePlan:
    target: str
    steps: tuple[UpgradeStep, ...]
    done: bool
    blocked: str | None = None


def plan_upgrade(
    target: str,
    speaks: tuple[int, int],
    mesh_protocol: int,
    machines: Sequence[MachineVersion],
) -> UpgradePlan:
    """What is left of rolling ``target`` (which speaks ``speaks``) out to ``machines``."""
    lo, hi = speaks
    if not lo <= mesh_protocol <= hi:
        why = (
            f"baton {target} speaks protocols {lo}-{hi} and the mesh runs at "
            f"{mesh_protocol}: no machine on it could hold; roll out a release that "
            f"speaks {mesh_protocol} first"
        )
        return UpgradePlan(target, (), False, why)
    steps: list[UpgradeStep] = []
    standbys = [m for m in machines if not m.awake]
    for m in standbys:
        if m.running != target:
            was = m.running or "an unknown version"
            said = f"runs {was}: install {target} there (it restarts by itself)"
            steps.append(UpgradeStep(m.name, "update", said))
        elif not m.in_sync:
            steps.append(UpgradeStep(m.name, "wait", f"runs {target}; catching up"))
    holder = next((m for m in machines if m.awake), None)
    if holder is not None and holder.running != target:
        ready = [m for m in standbys if m.running == target and m.in_sync]
        if ready:
            said = (
                f"`baton wakeup` on {ready[0].name}; then {holder.name} restarts on "
                f"{target} by itself (once {target} is installed there)"
            )
            steps.append(UpgradeStep(ready[0].name, "wakeup", said))
        else:
            said = f"runs {holder.running}: it hands over once a standby runs {target} in sync"
            steps.append(UpgradeStep(holder.name, "wait", said))
    return UpgradePlan(target, tuple(steps), not steps)
