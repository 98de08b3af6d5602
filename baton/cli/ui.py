"""`baton ui`: a one-time login URL for the node's status page, as Jupyter prints one.

The URL works once, within two minutes; the browser then holds a session cookie for
12 hours. `--open` hands it to this desktop's browser through a 0600 redirect file in
the home, as Jupyter does: a URL on the browser's command line is visible to every
user of the machine (ps) while it is still good.
"""

from __future__ import annotations

import html
from typing import Any

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
    client = NodeClient(ctx.home)
    answer = client.post("/api/ui/login", {})
    data = {"url": client.info["http"] + answer["path"], "expires_in_s": answer["expires_in_s"]}
    if open_it:
        _open(ctx, data["url"])

    def human(d: dict[str, Any]) -> None:
        click.echo("The status page, for one login within two minutes:")
        click.echo(f"    {d['url']}")

    ctx.emit(data, human)


def _open(ctx: Ctx, url: str) -> None:
    import os
    import webbrowser

    page = ctx.paths.run_dir / "ui-login.html"
    page.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        target = html.escape(url, quote=True)
        f.write(f'<!doctype html><meta http-equiv="refresh" content="0;url={target}">\n')
    webbrowser.open(page.as_uri())
