"""`baton pool status|placement|move|unpin|verify|enable|disable`: the pool (docs/DESIGN.md,
"The pool").

``status`` shows the pool as this machine holds it (whether on, its version, pins and
placements, this machine's role: "holder" or "mirror"), read from the running node's
status, so it answers while the pool is off too. ``enable`` and ``disable`` turn it on
or off; only the awake machine may (elsewhere: exit 1, saying so). ``placement``,
``move`` and ``unpin`` ask the holder, through this machine's node (a standby asks it
over the wire): where a topic runs and why; move it (the planner's checks: a member, a
known topic, not there already, the rate limit, ``--confirm`` for a target offline or a
reply in flight); let it be placed by load again. ``verify`` runs the pool's end-to-end
check and waits for its results (exit 1 unless every machine answered). A mesh without a
lease store has no pool (exit 1).
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import click

from baton.cli.support import Ctx, command, main
from baton.core.errors import Unavailable
from baton.node.client import NodeClient


@main.group("pool")
def pool_group() -> None:
    """The pool: each topic's agent runs on some machine of the mesh."""


def _human(d: dict[str, Any]) -> None:
    state = "on" if d["enabled"] else "off"
    click.echo(
        f"pool {state} (term {d['term']}, version {d['version']}); this machine: {d['role']}; "
        f"{d['pins']} pins, {d['placements']} placements"
    )


@command(pool_group, "status")
def pool_status(ctx: Ctx) -> None:
    """The pool as this machine holds it."""
    view = NodeClient(ctx.home).get("/api/status").get("pool")
    if view is None:
        raise Unavailable("this mesh has no pool: it needs a lease store")
    ctx.emit(view, _human)


def _switch(ctx: Ctx, enabled: bool) -> None:
    ctx.emit(NodeClient(ctx.home).post("/api/pool", {"enabled": enabled}), _human)


@command(pool_group, "enable")
def pool_enable(ctx: Ctx) -> None:
    """Turn the pool on (on the awake machine)."""
    _switch(ctx, True)


@command(pool_group, "disable")
def pool_disable(ctx: Ctx) -> None:
    """Turn the pool off (on the awake machine)."""
    _switch(ctx, False)


def _where(d: dict[str, Any]) -> None:
    where = d["nickname"] or d["machine_id"] or "nowhere"
    note = " (waiting for it to come back)" if d["waiting"] else ""
    click.echo(
        f"{d['topic']}: on {where}, {d['reason']}{note}; epoch {d['epoch']}; "
        f"holder {d['holder_nickname'] or d['holder']}"
    )


@command(pool_group, "placement")
@click.argument("topic")
def pool_placement(ctx: Ctx, topic: str) -> None:
    """Where TOPIC runs, and why: pinned, placed (for load) or unowned."""
    query = urllib.parse.urlencode({"topic": topic})
    ctx.emit(NodeClient(ctx.home).get(f"/pool/placement?{query}"), _where)


@command(pool_group, "move")
@click.argument("topic")
@click.argument("machine")
@click.option(
    "--confirm",
    is_flag=True,
    help="Move even to an offline machine, or while a reply is in flight.",
)
def pool_move(ctx: Ctx, topic: str, machine: str, confirm: bool) -> None:
    """Move TOPIC to MACHINE (a nickname or a machine id): pinned there; its message in
    flight finishes where it runs, the next runs on MACHINE."""
    body = {"topic": topic, "to": machine, "confirm": confirm}

    def human(d: dict[str, Any]) -> None:
        if d["handoff"]:
            click.echo(
                f"{topic} moves to {machine} (from {d['from'] or 'nowhere'}), epoch {d['epoch']}"
            )
        else:
            click.echo(f"{topic} runs on {machine} already: pinned there now")

    ctx.emit(NodeClient(ctx.home).post("/pool/transfer", body), human)


@command(pool_group, "unpin")
@click.argument("topic")
def pool_unpin(ctx: Ctx, topic: str) -> None:
    """Let TOPIC be placed by load again (it stays where it runs while that machine lives)."""

    def human(d: dict[str, Any]) -> None:
        click.echo(f"{topic}: unpinned" if d["unpinned"] else f"{topic} was not pinned")

    ctx.emit(NodeClient(ctx.home).post("/pool/unpin", {"topic": topic}), human)


@command(pool_group, "verify")
@click.option("--wait", "wait_s", default=10.0, show_default=True, help="Seconds to wait.")
def pool_verify(ctx: Ctx, wait_s: float) -> None:
    """The pool's end-to-end check: a probe through every machine the holder sees alive
    (the wire both ways, the seals, the lease views; never the agent). Exit 1 unless
    every machine answered."""
    client = NodeClient(ctx.home)
    view = client.post("/pool/verify", {})
    deadline = time.monotonic() + wait_s
    while not view["done"] and time.monotonic() < deadline:
        time.sleep(0.1)
        view = client.get("/session-pool/e2e-results")

    def human(d: dict[str, Any]) -> None:
        for machine_id, r in sorted(d["results"].items()):
            said = f"ok in {r['ms']} ms" if r["ok"] else f"FAILED: {r['error']}"
            click.echo(f"{machine_id}: {said}")
        for machine_id in d["waiting"]:
            click.echo(f"{machine_id}: no answer yet")
        click.echo("pool check: " + ("ok" if d["ok"] else "FAILED"))

    ctx.emit(view, human)
    if not view["ok"]:
        raise click.exceptions.Exit(1)
