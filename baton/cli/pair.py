"""`baton pair` (on the awake machine) and `baton join URL --code CODE` (on the new one).

Pairing failures have their own exit codes (baton.cli.support.EXIT_CODES), so scripts can
tell them apart: wrong code 10, refused 11 (the host has no open session for the code:
none, expired, used or burned; it does not tell a stranger which, so neither does it
tell the joiner), already used 13 (another joiner won the race, after this one's key
confirmation proved the code), not a baton node 15, unreachable 16; anything else 1.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

import click

from baton.cli.support import ADVERTISE_HELP, LISTEN_HELP, Ctx, command, config_values, main
from baton.core.errors import BadRequest, PairingError, PairingExpired
from baton.node.client import NodeClient
from baton.pairing.joiner import MESH_KNOBS, Consent
from baton.pairing.joiner import join as run_join


@command(main, "pair")
@click.option(
    "--verify",
    is_flag=True,
    help="Show the short authentication string and ask before admitting the joiner.",
)
def pair(ctx: Ctx, verify: bool) -> None:
    """Mint a pairing code on the awake machine (valid 2 minutes, 3 attempts).

    Give the new machine the code and this machine's URL:
    baton join URL --code CODE --name NICK. A new `pair` replaces the old code.
    """
    client = NodeClient(ctx.home)
    session = client.post("/api/pair/session", {"verify": verify})

    def human(d: dict[str, Any]) -> None:
        until = datetime.datetime.fromtimestamp(d["expires_at"]).strftime("%H:%M:%S")
        click.echo(f"pairing code: {d['code']}   (valid until {until}, 3 attempts)")
        click.echo(f"on the new machine: baton join {d['url']} --code {d['code']} --name NICK")

    if not verify:
        ctx.emit(session, human)
        return
    human(session) if not ctx.as_json else click.echo(json.dumps(session), err=True)
    outcome = _verify_joiner(client, session["expires_at"])
    ctx.emit(
        {**session, **outcome},
        lambda d: click.echo(
            f"{d['nickname']} joined" if d["accepted"] else "refused; the code is burned"
        ),
    )
    if not outcome["accepted"]:
        sys.exit(1)


def _verify_joiner(client: NodeClient, expires_at: float) -> dict[str, Any]:
    """Wait for a joiner, show its SAS, ask the operator, send the answer."""
    click.echo("waiting for the new machine to join...", err=True)
    while True:
        view = client.get("/api/pair/session")
        if view["waiting"]:
            break
        # "burned" may still end well: the third attempt can be the right code.
        if view["state"] not in ("open", "burned") or time.time() > expires_at + 1:
            raise PairingExpired(f"no machine joined with this code ({view['state']})")
        time.sleep(0.3)
    joiner = view["waiting"]
    click.echo(f"{joiner['nickname']} wants to join; it shows the code {joiner['sas']}", err=True)
    accept = click.confirm("Does the new machine show the same digits?", err=True)
    client.post("/api/pair/decide", {"session_id": view["session_id"], "accept": accept})
    return {"accepted": accept, "nickname": joiner["nickname"], "sas": joiner["sas"]}


@command(main, "join")
@click.argument("url")
@click.option("--code", required=True, help="The code `baton pair` printed on the awake machine.")
@click.option(
    "--name", default=None, help="This machine's nickname (needed if it has no identity)."
)
@click.option("--http", "http_", default=None, help="HOST:PORT for a new machine's HTTP API.")
@click.option("--wire", default=None, help="HOST:PORT for a new machine's wire.")
@click.option("--listen", default=None, help=LISTEN_HELP + " For a new machine.")
@click.option("--advertise", default=None, help=ADVERTISE_HELP + " For a new machine.")
@click.option(
    "--timeout",
    default=15.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds to wait for each answer of the awake machine (not its operator).",
)
@click.option("--yes", is_flag=True, help="Adopt the awake machine's settings without asking.")
@click.option(
    "--trust-agent",
    is_flag=True,
    help="Accept a cmd: or python: agent from the awake machine: this machine will run it.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Ask me to compare the short authentication string with the one the awake "
    "machine shows (`baton pair --verify`) before anything is written.",
)
def join(
    ctx: Ctx,
    *,
    url: str,
    code: str,
    name: str | None,
    http_: str | None,
    wire: str | None,
    listen: str | None,
    advertise: str | None,
    timeout: float,
    yes: bool,
    trust_agent: bool,
    verify: bool,
) -> None:
    """Join the mesh of the awake machine at URL as a standby, with a pairing code.

    The code never crosses the network (SPAKE2). Before this machine is admitted it
    shows the settings it would take from the awake machine (lease store, channel,
    agent) and asks; it refuses a cmd: or python: agent unless --trust-agent. With
    --verify it asks you to compare the short authentication string with the awake
    machine's before it writes anything.
    """
    given = {"http": http_, "wire": wire, "listen": listen, "advertise": advertise}
    config = config_values(given)
    consent = _AskingConsent(yes, verify)
    result = run_join(
        ctx.home,
        url,
        code,
        name,
        config=config,
        consent=consent,
        timeout=timeout,
        trust_agent=trust_agent,
    )

    def human(d: dict[str, Any]) -> None:
        click.echo(f"joined as {d['nickname']} ({d['machine_id']}), standby")
        for m in d["mesh"]:
            click.echo(f"  {m['nickname']:<16} {m['machine_id']}  {m['role']}")
        click.echo(f"start it with: baton up --home {ctx.home}")

    ctx.emit(result, human)


class _AskingConsent(Consent):
    """The joiner's operator at the terminal (stderr, so --json output stays clean)."""

    def __init__(self, yes: bool, verify: bool) -> None:
        self.yes, self.verify = yes, verify

    def show(self, sas: str, offered: Mapping[str, str]) -> None:
        click.echo(f"short authentication string: {sas}", err=True)
        click.echo("this machine would take from the awake machine:", err=True)
        for knob in MESH_KNOBS:
            click.echo(f"  {knob:<12} {offered.get(knob, '(not set: the default)')}", err=True)

    def settings(self, sas: str, offered: Mapping[str, str]) -> None:
        if self.yes:
            return
        if not sys.stdin.isatty():
            raise BadRequest("nothing asked (no terminal): join with --yes to adopt them")
        if not click.confirm("Adopt these settings and join?", err=True):
            raise PairingError("declined; this machine was not admitted")

    def sas(self, sas: str) -> None:
        if not self.verify:
            return
        if not sys.stdin.isatty():
            raise BadRequest("--verify needs a terminal to ask on")
        prompt = f"Does the awake machine show {sas}?"
        if not click.confirm(prompt, err=True):
            raise PairingError(
                "the short authentication strings differ: nothing was written. Tell the "
                "awake machine's operator: it may have admitted a stranger's machine"
            )
