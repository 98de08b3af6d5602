"""`baton ui`: a one-time login URL for the node's status page, as Jupyter prints one.

The URL works once, within two minutes; the browser then holds a session cookie for
12 hours. `--open` hands it to the desktop's browser as well.
"""

from __future__ import annotations

import click

from baton.cli.support import Ctx, command, main
from baton.node.client import NodeClient


@command(main, "ui")
@click.option("--open", "open_it", is_flag=True, help="Open the URL in this desktop's browser.")
def ui(ctx: Ctx, open_it: bool) -> None:
    """Print a one-time login URL for the node's status page.

    The page shows the mesh at a glance (machines, lease, alarms, topics, replies, the
    timeline of failovers and handoffs) and follows the node without a reload. The URL
    works once, within two minutes; it needs the running node.
    """
    data = NodeClient(ctx.home).post("/api/ui/login", {})
    if open_it:
        import webbrowser

        webbrowser.open(data["url"])

    def human(d: dict[str, str]) -> None:
        click.echo("The status page, for one login within two minutes:")
        click.echo(f"    {d['url']}")

    ctx.emit(data, human)
