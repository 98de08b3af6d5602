"""`baton restart`: restart this machine's node and check what it runs after (the
UpdateRestartHandshake, baton.core.update_restart); `baton upgrade`: what is left of a
rolling update (baton.core.upgrade_plan).

After an update of the installed package, the node still runs the version it imported
when it started; a restart has it import the new one. This command expects the version
installed now (its own: it imported baton from disk as it started), writes that down
for the next node, has the node restart (SIGUSR1: it stops cleanly, so on the awake
machine the lease is released at once and a standby that can speak the mesh's protocol
takes over, never one that cannot), and waits for it. Exit 0 when the node is back on
the expected version; 1 when it did not come back in time (the supervisor's last error
says why) or came back on another version (the node's status keeps the alarm).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import click

from baton import __version__
from baton.build import THIS
from baton.cli.support import Ctx, command, main
from baton.core.errors import NodeNotRunning, RestartFailed, Unavailable, UpgradeBlocked
from baton.core.update_restart import UpdateRestartHandshake
from baton.core.upgrade_plan import MachineVersion, plan_upgrade
from baton.node.client import RESTART_WAIT_S, NodeClient, restart_node, running_node
from baton.stores.restart_store import write_handshake
from baton.stores.runfile import read_run_file


@command(main, "restart")
@click.option(
    "--timeout",
    type=click.FloatRange(1, 3600),
    default=RESTART_WAIT_S,
    show_default=True,
    help="Seconds to wait for the node to come back.",
)
def restart(ctx: Ctx, timeout: float) -> None:
    """Restart the node; after an update, check it runs the version installed now."""
    before = running_node(ctx.paths)
    if before is None:
        raise NodeNotRunning(f"no node is running for {ctx.home}; start it with `baton up`")
    was = str(before.get("version") or "unknown")
    handshake = UpdateRestartHandshake(__version__, was, time.time())
    write_handshake(ctx.paths, handshake)
    started = time.monotonic()
    try:
        after = restart_node(ctx.paths, timeout)
    except Unavailable as exc:
        last = read_run_file(ctx.paths.last_error) or {}
        why = f"; the supervisor says: {last['detail']}" if last.get("detail") else ""
        raise RestartFailed(f"{exc.detail}{why}") from None
    outcome = handshake.judge(str(after.get("version") or "unknown"))
    if not outcome.ok:
        raise RestartFailed(outcome.detail)
    data: dict[str, Any] = {
        "ok": True,
        "outcome": outcome.kind,
        "detail": outcome.detail,
        "expected": handshake.expected,
        "before": handshake.before,
        "pid": after["pid"],
        "took_ms": round((time.monotonic() - started) * 1000, 1),
    }
    ctx.emit(data, lambda d: click.echo(f"restarted: {d['detail']} in {d['took_ms'] / 1000:.1f} s"))


@command(main, "upgrade")
def upgrade(ctx: Ctx) -> None:
    """What is left of a rolling update to the baton installed here, step by step.

    Install the new baton on every machine: standbys restart on it by themselves; the
    awake machine hands over to an updated standby (`baton wakeup` there) first. Exit 1
    when the update cannot roll out without a gap (it says why).
    """
    d = NodeClient(ctx.home).get("/api/status")
    in_sync, holder = set(d.get("in_sync") or ()), d.get("holder")
    rows = [(d["nickname"], d["machine_id"], d["version"])]
    peers = [(p["nickname"] or p["machine_id"], p["machine_id"], p["version"]) for p in d["peers"]]
    rows += sorted(peers)  # the guide names machines in one order, whoever answered first
    machines = [MachineVersion(name, ran, i == holder, i in in_sync) for name, i, ran in rows]
    mesh = d["versions"]["mesh_protocol"]
    plan = plan_upgrade(__version__, THIS.protocols, mesh, machines)
    data = {
        "target": plan.target,
        "done": plan.done,
        "blocked": plan.blocked,
        "steps": [asdict(s) for s in plan.steps],
    }

    def human(p: dict[str, Any]) -> None:
        if p["blocked"]:
            click.echo(f"blocked: {p['blocked']}")
        elif p["done"]:
            click.echo(f"done: every machine runs baton {p['target']}")
        for n, step in enumerate(p["steps"], 1):
            click.echo(f"{n}. {step['machine']}: {step['detail']}")

    ctx.emit(data, human)
    if plan.blocked:
        raise UpgradeBlocked(plan.blocked)
