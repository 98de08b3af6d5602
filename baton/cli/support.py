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


#: Each command: the modules of baton.cli that define it (a group's subcommands may live
#: in more than one) and its summary, the first sentence of its help. A command's module
#: is imported only when it runs or its own --help is asked for: a `baton whoami` never
#: loads the node, the HTTP stack or the demo, and `baton --help` lists every command from
#: this table without importing any (tests/unit/test_cli_loading.py holds the summaries
#: to the commands' own help).
COMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    "init": (
        ("lifecycle",),
        "Create this machine: keys, identity, API token and config.toml in its home.",
    ),
    "up": (
        ("lifecycle",),
        "Run this machine's node under a supervisor (foreground unless --detach).",
    ),
    "down": (
        ("lifecycle",),
        "Stop this machine's supervisor and node; returns once both processes have exited.",
    ),
    "whoami": (
        ("info",),
        "Who this machine is: id, nickname, key fingerprints, home, role, running.",
    ),
    "machines": (
        ("info", "members"),
        "List the machines of the mesh (works with the node stopped).",
    ),
    "status": (
        ("status",),
        "The mesh as this machine sees it, on one screen, the alarms first.",
    ),
    "ui": (("ui",), "Print a one-time login URL for the node's status page."),
    "pair": (("pair",), "Mint a pairing code on the awake machine (valid 2 minutes, 3 attempts)."),
    "join": (
        ("pair",),
        "Join the mesh of the awake machine at URL as a standby, with a pairing code.",
    ),
    "leave": (("members",), "Leave the mesh (run on a standby)."),
    "send": (("send",), "Post TEXT into TOPIC as the user (the bundled chat service only)."),
    "wakeup": (
        ("wakeup",),
        "Make this machine awake: the holder hands the role over without a gap.",
    ),
    "restart": (
        ("restart",),
        "Restart the node; after an update, check it runs the version installed now.",
    ),
    "upgrade": (
        ("restart",),
        "What is left of a rolling update to the baton installed here, step by step.",
    ),
    "doctor": (
        ("doctor",),
        "Check every peer's endpoints, the lease store and the channel from here.",
    ),
    "chat-server": (
        ("chat",),
        "Run the bundled chat service (Telegram's Bot API shape) until Ctrl-C or SIGTERM.",
    ),
    "secrets": (
        ("secret_cmds",),
        "The secrets this machine keeps for its agent, encrypted at rest (AES-256-GCM).",
    ),
    "pool": (("pool_cmds",), "The pool: each topic's agent runs on some machine of the mesh."),
    "features": (
        ("feature_cmds",),
        "The optional components' mesh-wide flags: list them, or enable or disable one.",
    ),
    "demo": (
        ("demo",),
        "Show a mesh of 3 machines failing over, handing off, pausing and moving a topic.",
    ),
}


class LazyGroup(click.Group):
    """The top group: imports a command's modules when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        modules, _ = COMMANDS.get(cmd_name, ((), ""))
        for module in modules:
            importlib.import_module(f"baton.cli.{module}")  # registers it on main
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `baton --help`, from the table: no command is imported."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in sorted(COMMANDS.items())])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="baton")
def main() -> None:
    """baton: one agent, many machines; never two captains; never a dropped or doubled reply.

    Every command takes --home DIR (or $BATON_HOME; default ~/.baton) to choose the
    machine, and --json for machine-readable output.
    """
