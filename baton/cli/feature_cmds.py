"""`baton features [list|enable|disable NAME]`: the mesh-wide component flags
(docs/DESIGN.md, "Component flags").

``baton features`` lists each optional component, on or off, and the core guarantees,
which have no switch. ``enable`` and ``disable`` change a flag on the awake machine
alone (elsewhere: exit 1, saying which machine holds); the holder signs the change and
every member takes it within seconds. The pool's flag is the pool's own switch (`baton
pool enable|disable`). The node must be running.
"""

from __future__ import annotations

from typing import Any

import click

from baton.cli.support import Ctx, command, main
from baton.node.client import NodeClient


@main.group("features", invoke_without_command=True)
@click.option("--home", type=click.Path(file_okay=False), default=None, help="The machine's home.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def features_group(cctx: click.Context, home: str | None, as_json: bool) -> None:
    """The optional components' mesh-wide flags: list them, or enable or disable one."""
    cctx.obj = {"home": home, "json": as_json}
    if cctx.invoked_subcommand is None:
        cctx.invoke(features_list, home=home, as_json=as_json)


def _human(d: dict[str, Any]) -> None:
    for c in d["components"]:
        state = "on" if c["enabled"] else "off"
        if not c["available"]:
            state += " (not available: it needs a lease store)"
        click.echo(f"{c['name']:<12} {state:<4} {c['about']}")
    set_by = d["set_by"] or "nobody yet"
    click.echo(f"flags version {d['epoch']}.{d['version']}, signed by {set_by}")
    click.echo("always on: " + ", ".join(c["name"] for c in d["core"]))


@command(features_group, "list")
def features_list(ctx: Ctx) -> None:
    """Each component's flag, and the core guarantees (no flag)."""
    ctx.emit(NodeClient(ctx.home).get("/api/features"), _human)


@command(features_group, "enable")
@click.argument("name")
def features_enable(ctx: Ctx, name: str) -> None:
    """Turn component NAME on, mesh-wide (on the awake machine)."""
    ctx.emit(NodeClient(ctx.home).post("/api/features", {"name": name, "enabled": True}), _human)


@command(features_group, "disable")
@click.argument("name")
def features_disable(ctx: Ctx, name: str) -> None:
    """Turn component NAME off, mesh-wide (on the awake machine)."""
    ctx.emit(NodeClient(ctx.home).post("/api/features", {"name": name, "enabled": False}), _human)
