"""`baton chat-server`: run the bundled chat service in the foreground.

It serves until SIGINT or SIGTERM, then stops cleanly (exit 0). The SQLite file keeps
everything (topics, messages, updates, the highest epoch, the webhook, the send and poll
logs), so a restart on the same --db loses nothing; the fault controls (/api/faults) live
in memory only.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from baton.channels.chat_schema import MODES
from baton.channels.chat_server import ChatServer
from baton.channels.chat_service import TOKEN_SHAPE
from baton.cli_support import Ctx, command, main
from baton.core.errors import ConfigError


@command(main, "chat-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8480,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--db",
    "db",
    default="./baton-chat.sqlite",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The SQLite file that keeps the chat (created 0600).",
)
@click.option(
    "--token",
    default=None,
    help="Accept only this bot token (default: any token of the Bot API's shape).",
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="fencing",
    show_default=True,
    help="fencing: sendMessage takes baton_epoch and baton_reply_key (stale epochs are "
    "refused, repeated keys deliver once); telegram: behave as Telegram does (both are "
    "ignored, every send is delivered, 4096 UTF-16 units at most, no getReplyStatus).",
)
def chat_server(ctx: Ctx, host: str, port: int, db: str, token: str | None, mode: str) -> None:
    """Run the bundled chat service (Telegram's Bot API shape) until Ctrl-C or SIGTERM.

    Point a machine at it with channel = "local:http://HOST:PORT"; post as the user with
    POST /api/topics/<topic>/messages {"text": ...}. --mode telegram drops baton's
    fencing and reply keys to behave as Telegram does.
    """
    if token is not None and not TOKEN_SHAPE.fullmatch(token):
        raise ConfigError("token", "a bot token is 1 to 100 of 0-9 A-Z a-z : _ -")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ChatServer(Path(db), host, port, token, mode) as server:
            path = str(Path(db).absolute())
            if ctx.as_json:
                click.echo(json.dumps({"url": server.url, "db": path, "mode": mode}))
            else:
                click.echo(server.url)
                click.echo(f"baton chat-server: serving {path} ({mode}); Ctrl-C stops", err=True)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
