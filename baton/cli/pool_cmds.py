"""`baton pool status|enable|disable`: the pool (docs/DESIGN.md, "The pool").

``status`` shows the pool as this machine holds it (whether on, its version, pins and
placements, this machine's role: "holder" or "mirror"), read from the running node's
status, so it answers while the pool is off too. ``enable`` and ``disable`` turn it on
or off; only the awake machine may (elsewhere: exit 1, saying so). A mesh without a
lease store has no pool (exit 1).
"""

from __future__ import annotations

from typing import Any

import click

from baton.cli.support import Ctx, command, main
from baton.core.errors import Unavailable
from baton.node.client import NodeClient


@main.group("pool")
def pool_group() -> None:
    """The pool: topics run on any machine (in progress: on, off, and its state)."""


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
