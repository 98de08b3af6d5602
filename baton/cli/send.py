"""`baton send TOPIC TEXT`: post a user message through this machine's chat service.

The running node takes it: the holder posts it; a standby forwards it to the holder,
or keeps it durably until a holder exists. Exit 0 once it is posted or queued; the
output says which.
"""

from __future__ import annotations

from typing import Any

import click

from baton.cli.support import Ctx, command, main
from baton.node.client import NodeClient


@command(main, "send")
@click.argument("topic")
@click.argument("text")
@click.option(
    "--wait",
    "wait_s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0, 60),
    help="Seconds to wait for the channel to have it before saying it is queued.",
)
def send(ctx: Ctx, topic: str, text: str, wait_s: float) -> None:
    """Post TEXT into TOPIC as the user (the bundled chat service only)."""
    client = NodeClient(ctx.home, timeout=wait_s + 10)
    data = client.post("/api/send", {"topic": topic, "text": text, "wait_s": wait_s})

    def human(d: dict[str, Any]) -> None:
        if d["status"] == "posted":
            click.echo(f"posted to {topic} as message {d['message_id']}")
        else:
            click.echo(f"queued ({d['item_id']}): it is posted once an awake machine has it")

    ctx.emit(data, human)
