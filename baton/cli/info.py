"""`baton whoami`, `baton machines`: what this machine is and which machines it knows.

Both work with the node stopped (they read the home); `baton status` (baton.cli.status)
needs the running node, because reachability and round-trip times are live facts.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import click

from baton.cli.support import Ctx, command, main
from baton.core import safejson
from baton.core.errors import BadRequest
from baton.node.client import NodeClient, running_node

# With the node running, whoami and machines ask it and need nothing more: the home's
# readers (registry, settings) and rich are loaded where they are used, so the commands
# start quickly (tools/bench/cli.py).


def _offline_machines(ctx: Ctx) -> list[dict[str, Any]]:
    from baton.core.registry import open_registry
    from baton.node.views import machine_view
    from baton.stores.config_file import load_settings
    from baton.stores.identity_store import load_public_identity
    from baton.stores.registry_store import JsonRegistryStore

    me = load_public_identity(ctx.home)
    registry = JsonRegistryStore(ctx.paths.registry).load()
    if registry is None:  # never started: a mesh of one, founded by this machine
        settings = load_settings(ctx.home, os.environ, {})
        registry = open_registry(None, me, settings.wire.zmq_endpoint, settings.http.url, 0.0)
    return [machine_view(e, me.machine_id) for e in registry.listing()]


def _when(wall: float | None) -> str:
    if not wall:
        return "-"
    return datetime.datetime.fromtimestamp(wall).strftime("%Y-%m-%d %H:%M:%S")


@command(main, "whoami")
def whoami(ctx: Ctx) -> None:
    """Who this machine is: id, nickname, key fingerprints, home, role, running."""
    if running_node(ctx.paths) is not None:
        data = NodeClient(ctx.home).get("/api/whoami")
    else:
        from baton.node.views import identity_view
        from baton.stores.identity_store import load_public_identity

        me = load_public_identity(ctx.home)
        row = next(m for m in _offline_machines(ctx) if m["machine_id"] == me.machine_id)
        data = {
            **identity_view(me),
            "role": row["role"],
            "running": False,
            "home": str(ctx.home),
            "http": row["http"],
            "wire": row["wire"],
        }

    def human(d: dict[str, Any]) -> None:
        click.echo(
            f"{d['nickname']} ({d['machine_id']}), {d['role']}, "
            f"{'running' if d['running'] else 'not running'}"
        )
        click.echo(f"  home           {d['home']}")
        click.echo(f"  signing key    {d['signing_fingerprint']}")
        click.echo(f"  encryption key {d['encryption_fingerprint']}")
        for key in ("http", "wire"):
            if key in d:
                click.echo(f"  {key:<14} {d[key]}")

    ctx.emit(data, human)


@main.group("machines", invoke_without_command=True)
@click.option("--home", type=click.Path(file_okay=False), default=None, help="The machine's home.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def machines(cctx: click.Context, home: str | None, as_json: bool) -> None:
    """List the machines of the mesh (works with the node stopped)."""
    cctx.obj = {"home": home, "json": as_json}
    if cctx.invoked_subcommand is None:
        cctx.invoke(_list_machines, home=home, as_json=as_json)


@command(machines, "list", hidden=True)
def _list_machines(ctx: Ctx) -> None:
    if running_node(ctx.paths) is not None:
        rows = NodeClient(ctx.home).get("/api/machines")
    else:
        rows = _offline_machines(ctx)

    def human(rows: list[dict[str, Any]]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(
            "nickname", "machine id", "role", "status", "version", "paired", "last seen", box=None
        )
        for r in rows:
            name = r["nickname"] + (" (this)" if r.get("self") else "")
            status = r["status"]
            if r.get("revoked_at"):
                status += f" {_when(r['revoked_at'])}: {r.get('revoked_reason') or ''}"
            table.add_row(
                name,
                r["machine_id"],
                r["role"],
                status,
                r.get("version") or "?",
                _when(r.get("paired_at")),
                _when(r.get("last_seen")),
            )
        Console().print(table)

    ctx.emit(rows, human)


@command(machines, "add")
@click.argument("card", type=click.File("r"))
def add_machine(ctx: Ctx, card: Any) -> None:
    """Admit a peer from its card (the JSON of its `baton whoami --json`, or - for stdin).

    A stop-gap until pairing: the node must be running; the peer is added as a
    standby and may connect over the wire at once.
    """
    try:
        doc = safejson.loads(card.read())
    except ValueError as exc:
        raise BadRequest(f"the card is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the card must be a JSON object")
    fields = ("machine_id", "nickname", "signing_public", "encryption_public", "wire", "http")
    row = NodeClient(ctx.home).post("/api/machines", {k: doc.get(k) for k in fields})
    ctx.emit(row, lambda r: click.echo(f"added {r['nickname']} ({r['machine_id']}) as {r['role']}"))
