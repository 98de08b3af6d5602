"""`baton wakeup [--force]`: make this machine the awake one.

A planned handoff: the holder hands over once this machine has caught up with the live
tail, so nothing is lost or answered twice. On the awake machine it says so and
changes nothing. ``--force`` takes over without the holder only where a failover
would: when the holder's lease has expired in this machine's clock frame. Exit 0 once
this machine is awake; otherwise 1, saying why (the old holder stays awake). A wakeup
that fails for a reason that passes (this machine still catching up, a busy host) is
tried again for up to a minute (``attempts`` in the answer).
"""

from __future__ import annotations

from typing import Any

import click

from baton.cli.support import Ctx, command, main
from baton.node.client import NodeClient

WAIT_S = 120.0


@command(main, "wakeup")
@click.option(
    "--force",
    is_flag=True,
    help="Take over an expired lease without the holder (only where failover would).",
)
def wakeup(ctx: Ctx, force: bool) -> None:
    """Make this machine awake: the holder hands the role over without a gap."""
    client = NodeClient(ctx.home, timeout=WAIT_S)
    data = client.post("/api/wakeup", {"force": force})

    def human(d: dict[str, Any]) -> None:
        if d["outcome"] == "already_awake":
            click.echo(f"this machine is awake already (epoch {d['epoch']}); nothing changed")
        else:
            how = "took over" if d["outcome"] == "took_over" else "handed over"
            click.echo(f"awake at epoch {d['epoch']}: {how} in {d['took_ms'] / 1000:.2f} s")

    ctx.emit(data, human)
