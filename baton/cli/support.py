"""Shared pieces of the `baton` command line: the group, --home/--json, error exits.

Errors: a BatonError ends the command with exit code 1 (EXIT_FATAL for start-up
errors of `up`), printed as `baton: <detail>` on stderr, or as JSON
{error, detail} on stdout under --json.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from baton import __version__
from baton.core.errors import BatonError
from baton.stores.home import HomePaths, resolve_home

HTTP_HELP = "HOST:PORT for the HTTP API (default 127.0.0.1:8420)."
WIRE_HELP = (
    "HOST:PORT the encrypted wire listens on (default 127.0.0.1:8421); 0.0.0.0:8421 or "
    "[::]:8421 for every interface, which peers then reach on the addresses found."
)
LISTEN_HELP = (
    "Be reachable from other machines: the wire and the door (pairing, leaving) listen "
    "on this host, 0.0.0.0 (or ::) for every interface; peers dial the addresses found. "
    "The operator API stays on --http (loopback)."
)
ADVERTISE_HELP = (
    "Where peers reach this machine's wire, in the order to dial them, comma-separated: "
    "auto (the default: the interface addresses when --wire binds every interface, else "
    "its address), a host name (laptop.tail1234.ts.net), an address, HOST:PORT."
)


def config_values(given: Mapping[str, str | None]) -> dict[str, object]:
    """The knobs given as flags, as config.toml keeps them (advertise as a list)."""
    values: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    if "advertise" in values:
        from baton.core.knobs import resolve_settings

        values["advertise"] = list(
            resolve_settings({}, {}, {"advertise": given["advertise"]}).advertise
        )
    return values


#: Exit codes of errors scripts want to tell apart (pairing); every other error exits 1.
EXIT_CODES = {
    "wrong_code": 10,
    "pairing_refused": 11,  # a host since issue 16 says only this of the four below
    "pairing_burned": 11,
    "pairing_expired": 12,
    "pairing_consumed": 13,
    "no_pairing_session": 14,
    "not_a_baton_node": 15,
    "unavailable": 16,
}


class Ctx:
    def __init__(self, home: Path, as_json: bool) -> None:
        self.home = home
        self.as_json = as_json
        self.paths = HomePaths(home)

    def emit(self, data: Any, human: Callable[[Any], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(data, indent=2))
        else:
            human(data)


def command(group: click.Group, name: str | None = None, **kw: Any) -> Callable[..., Any]:
    """A subcommand with --home and --json, whose BatonErrors become clean exits."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @group.command(name, **kw)
        @click.option(
            "--home",
            type=click.Path(file_okay=False),
            default=None,
            help="The machine's home (default: $BATON_HOME or ~/.baton).",
        )
        @click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
        @functools.wraps(fn)
        def run(home: str | None, as_json: bool, **kwargs: Any) -> Any:
            parent = click.get_current_context().find_object(dict) or {}
            home = home or parent.get("home")
            ctx = Ctx(resolve_home(home, os.environ), as_json or bool(parent.get("json")))
            try:
                return fn(ctx, **kwargs)
            except BatonError as exc:
                fail(ctx, exc.code, exc.detail, EXIT_CODES.get(exc.code, 1))

        return run

    return wrap


def fail(ctx: Ctx, error: str, detail: str, code: int = 1) -> None:
    if ctx.as_json:
        click.echo(json.dumps({"error": error, "detail": detail}))
    else:
        click.echo(f"baton: {detail}", err=True)
    sys.exit(code)


#: Each command, and the modules of baton.cli that define it (a group's subcommands may
#: live in more than one). A command's module is imported only when it runs (or for
#: --help): a `baton whoami` never loads the node, the HTTP stack or the demo.
COMMANDS: dict[str, tuple[str, ...]] = {
    "init": ("lifecycle",),
    "up": ("lifecycle",),
    "down": ("lifecycle",),
    "whoami": ("info",),
    "machines": ("info", "members"),
    "status": ("info",),
    "pair": ("pair",),
    "join": ("pair",),
    "leave": ("members",),
    "send": ("send",),
    "wakeup": ("wakeup",),
    "restart": ("restart",),
    "upgrade": ("restart",),
    "doctor": ("doctor",),
    "chat-server": ("chat",),
    "secrets": ("secret_cmds",),
    "pool": ("pool_cmds",),
    "features": ("feature_cmds",),
    "demo": ("demo",),
}


class LazyGroup(click.Group):
    """The top group: imports a command's modules when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for module in COMMANDS.get(cmd_name, ()):
            importlib.import_module(f"baton.cli.{module}")  # registers it on main
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="baton")
def main() -> None:
    """baton: one agent, many machines; never two captains; never a dropped or doubled reply.

    Every command takes --home DIR (or $BATON_HOME; default ~/.baton) to choose the
    machine, and --json for machine-readable output.
    """
