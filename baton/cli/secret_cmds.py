"""`baton secrets set|list|rm`: this machine's secret store (baton.stores.secret_store).

A value comes from standard input (piped) or a hidden prompt, never from an argument
(arguments show in `ps` and shell history). `list` shows names, who set each and when,
never a value.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from baton.cli.support import Ctx, command, main
from baton.core.secret_rules import MAX_VALUE_BYTES, check_name
from baton.stores.identity_store import load_public_identity
from baton.stores.secret_keys import system_keychain
from baton.stores.secret_store import SecretStore


@main.group("secrets")
def secrets_group() -> None:
    """The secrets this machine keeps for its agent, encrypted at rest (AES-256-GCM)."""


def _store(ctx: Ctx) -> SecretStore:
    me = load_public_identity(ctx.home)
    return SecretStore(ctx.paths, me.machine_id, system_keychain())


def _read_value() -> str:
    if sys.stdin.isatty():
        value: str = click.prompt("value", hide_input=True, confirmation_prompt=True)
        return value
    data = sys.stdin.buffer.read(MAX_VALUE_BYTES + 2)
    text = data.decode("utf-8", "surrogateescape")
    return text[:-1] if text.endswith("\n") else text  # `echo` adds one


@command(secrets_group, "set")
@click.argument("name")
def set_secret(ctx: Ctx, name: str) -> None:
    """Set NAME; the value is read from standard input (or a hidden prompt)."""
    store = _store(ctx)
    check_name(name)  # before a value is asked for
    store.set(name, _read_value(), time.time())
    ctx.emit({"name": name, "set": True}, lambda d: click.echo(f"secret {d['name']} set"))


@command(secrets_group, "list")
def list_secrets(ctx: Ctx) -> None:
    """The secrets' names, which machine set each and when (never their values)."""
    rows = [
        {"name": n, "set_by": s.set_by, "set_at": s.set_at}
        for n, s in sorted(_store(ctx).all().items())
    ]

    def human(rows: list[dict[str, Any]]) -> None:
        if not rows:
            click.echo("no secrets")
        for r in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["set_at"]))
            click.echo(f"{r['name']}  set by {r['set_by']} at {when}")

    ctx.emit(rows, human)


@command(secrets_group, "rm")
@click.argument("name")
def remove_secret(ctx: Ctx, name: str) -> None:
    """Remove NAME."""
    _store(ctx).remove(name, time.time())
    ctx.emit({"name": name, "removed": True}, lambda d: click.echo(f"secret {d['name']} removed"))
