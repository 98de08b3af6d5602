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
from baton.channels.chat_tokens import token_paths
from baton.cli.support import Ctx, command, main


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
    "--mode",
    type=click.Choice(MODES),
    default="fencing",
    show_default=True,
    help="fencing: sendMessage takes baton_epoch and baton_reply_key (stale epochs are "
    "refused, repeated keys deliver once); telegram: behave as Telegram does (both are "
    "ignored, every send is delivered, 4096 UTF-16 units at most, no getReplyStatus).",
)
def chat_server(ctx: Ctx, host: str, port: int, db: str, mode: str) -> None:
    """Run the bundled chat service (Telegram's Bot API shape) until Ctrl-C or SIGTERM.

    Point a machine at it with channel = "local:http://HOST:PORT" and the bot token in its
    machine/telegram-token; post as the user with POST /api/topics/<topic>/messages
    {"text": ...} and Authorization: Bearer <the user token>. The two tokens are minted
    at the first start beside the database (DB.bot-token, DB.user-token, 0600).
    --mode telegram drops baton's fencing and reply keys to behave as Telegram does.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ChatServer(Path(db), host, port, mode) as server:
            path = Path(db).absolute()
            bot, user = (str(p) for p in token_paths(path))
            if ctx.as_json:
                doc = {"url": server.url, "db": str(path), "mode": mode}
                click.echo(json.dumps({**doc, "bot_token_file": bot, "user_token_file": user}))
            else:
                click.echo(server.url)
                click.echo(f"baton chat-server: serving {path} ({mode}); Ctrl-C stops", err=True)
                click.echo(f"  bot token in {bot}; user token in {user}", err=True)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
