"""`baton whoami`, `baton machines`, `baton status`: what this machine is and sees.

whoami and machines work with the node stopped (they read the home); status needs
the running node, because reachability and round-trip times are live facts.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from baton.cli.support import Ctx, command, main
from baton.core import safejson
from baton.core.errors import BadRequest
from baton.core.registry import open_registry
from baton.node.client import NodeClient, running_node
from baton.node.views import identity_view, machine_view
from baton.stores.config_file import load_settings
from baton.stores.identity_store import load_public_identity
from baton.stores.registry_store import JsonRegistryStore


def _offline_machines(ctx: Ctx) -> list[dict[str, Any]]:
    me = load_public_identity(ctx.home)
    registry = JsonRegistryStore(ctx.paths.registry).load()
    if registry is None:  # never started: a mesh of one, founded by this machine
        settings = load_settings(ctx.home, os.environ, {})
        registry = open_registry(None, me, settings.wire.zmq_endpoint, settings.http.url, 0.0)
    return [machine_view(e, me.machine_id) for e in registry.listing()]


def _when(wall: float | None) -> str:
    if not wall:
        return "-"
    return datetime.datetime.fromtimestamp(wall).strftime("%Y-%m-%d %H:%M:%S")


@command(main, "whoami")
def whoami(ctx: Ctx) -> None:
    """Who this machine is: id, nickname, key fingerprints, home, role, running."""
    if running_node(ctx.paths) is not None:
        data = NodeClient(ctx.home).get("/api/whoami")
    else:
        me = load_public_identity(ctx.home)
        row = next(m for m in _offline_machines(ctx) if m["machine_id"] == me.machine_id)
        data = {
            **identity_view(me),
            "role": row["role"],
            "running": False,
            "home": str(ctx.home),
            "http": row["http"],
            "wire": row["wire"],
        }

    def human(d: dict[str, Any]) -> None:
        click.echo(
            f"{d['nickname']} ({d['machine_id']}), {d['role']}, "
            f"{'running' if d['running'] else 'not running'}"
        )
        click.echo(f"  home           {d['home']}")
        click.echo(f"  signing key    {d['signing_fingerprint']}")
        click.echo(f"  encryption key {d['encryption_fingerprint']}")
        for key in ("http", "wire"):
            if key in d:
                click.echo(f"  {key:<14} {d[key]}")

    ctx.emit(data, human)


@main.group("machines", invoke_without_command=True)
@click.option("--home", type=click.Path(file_okay=False), default=None, help="The machine's home.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def machines(cctx: click.Context, home: str | None, as_json: bool) -> None:
    """List the machines of the mesh (works with the node stopped)."""
    cctx.obj = {"home": home, "json": as_json}
    if cctx.invoked_subcommand is None:
        cctx.invoke(_list_machines, home=home, as_json=as_json)


@command(machines, "list", hidden=True)
def _list_machines(ctx: Ctx) -> None:
    if running_node(ctx.paths) is not None:
        rows = NodeClient(ctx.home).get("/api/machines")
    else:
        rows = _offline_machines(ctx)

    def human(rows: list[dict[str, Any]]) -> None:
        table = Table(
            "nickname", "machine id", "role", "status", "version", "paired", "last seen", box=None
        )
        for r in rows:
            name = r["nickname"] + (" (this)" if r.get("self") else "")
            status = r["status"]
            if r.get("revoked_at"):
                status += f" {_when(r['revoked_at'])}: {r.get('revoked_reason') or ''}"
            table.add_row(
                name,
                r["machine_id"],
                r["role"],
                status,
                r.get("version") or "?",
                _when(r.get("paired_at")),
                _when(r.get("last_seen")),
            )
        Console().print(table)

    ctx.emit(rows, human)


@command(machines, "add")
@click.argument("card", type=click.File("r"))
def add_machine(ctx: Ctx, card: Any) -> None:
    """Admit a peer from its card (the JSON of its `baton whoami --json`, or - for stdin).

    A stop-gap until pairing: the node must be running; the peer is added as a
    standby and may connect over the wire at once.
    """
    try:
        doc = safejson.loads(card.read())
    except ValueError as exc:
        raise BadRequest(f"the card is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("the card must be a JSON object")
    fields = ("machine_id", "nickname", "signing_public", "encryption_public", "wire", "http")
    row = NodeClient(ctx.home).post("/api/machines", {k: doc.get(k) for k in fields})
    ctx.emit(row, lambda r: click.echo(f"added {r['nickname']} ({r['machine_id']}) as {r['role']}"))


def _lease_line(d: dict[str, Any]) -> str:
    if d.get("failover"):
        return f"lease: {d['failover']}"
    store = d["store"]
    where = store["where"] + (
        "" if store["reachable"] is not False else f" (UNREACHABLE: {store['error']})"
    )
    if d["role"] == "awake":
        return f"lease: held, epoch {d['epoch']}, {d['deadline_ms']} ms left to act; store {where}"
    due = d.get("takeover_in_ms")
    after = "" if due is None else f"; may take over in {due} ms"
    if d.get("may_take_over") is False:
        after = "; OUT OF SYNC: catching up, takes over only by `wakeup --force`"
    if d.get("unable"):
        after = f"; MAY NOT HOLD: {d['unable']}"
    return f"lease: standby, holder {d['holder']}, epoch {d['epoch']}{after}; store {where}"


def _sync_alarms(d: dict[str, Any]) -> list[str]:
    """The holder: every peer its lease record does not name in sync (no automatic
    failover to it until it has caught up)."""
    if d.get("role") != "awake" or d.get("failover") or d.get("delivery") is None:
        return []
    in_sync = set(d.get("in_sync") or ())
    return [
        f"ALARM out_of_sync: {p['nickname'] or p['machine_id']} is not in sync "
        "(it does not take over by itself until it has caught up)"
        for p in d.get("peers", [])
        if p["machine_id"] not in in_sync
    ]


def _delivery_line(d: dict[str, Any] | None) -> str:
    if d is None:
        return "delivery: no channel (this machine answers nothing)"
    ledger = d["ledger"]
    pending = sum(n for state, n in ledger.items() if state != "acked")
    doing = f"answering (epoch {d['term']})" if d["term"] else "standing by"
    problem = _POLL_PROBLEMS.get(d.get("polling", ""))
    if d["term"] and problem:
        doing = f"holding epoch {d['term']} but {problem}"
    return (
        f"delivery: {doing} on {d['channel']} with {d['agent']}; "
        f"{pending} pending, {ledger.get('acked', 0)} done, {d['queued']} queued to send"
    )


_POLL_PROBLEMS = {
    "webhook_active": "CANNOT POLL: a webhook is set on the bot (delete it: deleteWebhook)",
    "rate_limited": "polling is rate-limited by the channel (waiting as told)",
    "conflict": "another poller is taking this bot's updates",
}


def _tail_line(t: dict[str, Any] | None) -> str | None:
    if t is None:
        return None
    if t["role"] == "source":
        behind = sum(t["unconfirmed"].values())
        return (
            f"live tail: streaming {t['turns']} turns of {t['topics']} topics; "
            f"{behind} not yet confirmed by the standbys"
        )
    return f"live tail: {t['buffered_topics']} topics mirrored from the holder"


def _pool_line(p: dict[str, Any] | None) -> str | None:
    if not p or not p["enabled"]:
        return None
    line = f"pool: on; {p['pins']} pins, {p['placements']} placements; this machine {p['role']}"
    r = p.get("routing")
    if r:
        line += f"; {r['running']} runs out, {r['waiting']} waiting, {r['taken_back']} taken back"
    return line


def _features_line(flags: dict[str, bool] | None) -> str | None:
    """The components turned off mesh-wide (`baton features`), if any."""
    off = sorted(name for name, on in (flags or {}).items() if not on)
    return f"features: {', '.join(off)} off (baton features)" if off else None


def _versions_lines(v: dict[str, Any] | None) -> list[str]:
    """This machine's version, the mesh's protocol, and the skew (as alarms)."""
    if not v:
        return []
    lo, hi = v["protocols"]
    speaks = f"protocol {lo}" if lo == hi else f"protocols {lo}-{hi}"
    mesh = v["mesh_protocol"]
    line = f"version: baton {v['version']} ({speaks}); the mesh runs at protocol {mesh}"
    return [line, *(f"ALARM version_skew: {said}" for said in v["skew"])]


def _handoff_line(h: dict[str, Any] | None) -> str | None:
    if not h or not h["recent"]:
        return None
    last = h["recent"][-1]
    return f"last handoff ({last['side']}): {last['kind']}: {last['detail']}"


@command(main, "status")
def status(ctx: Ctx) -> None:
    """The running node's role and its peers' reachability and round-trip times."""
    data = NodeClient(ctx.home).get("/api/status")

    def human(d: dict[str, Any]) -> None:
        click.echo(f"{d['nickname']} ({d['machine_id']}) is {d['role']}; up {d['uptime_s']:.0f} s")
        click.echo(_lease_line(d))
        click.echo(_delivery_line(d.get("delivery")))
        lines = (
            _tail_line(d.get("tail")),
            _handoff_line(d.get("handoff")),
            _pool_line(d.get("pool")),
            _features_line(d.get("features")),
        )
        for line in lines:
            if line:
                click.echo(line)
        for line in _versions_lines(d.get("versions")):
            click.echo(line)
        restarted = d.get("restart")
        if restarted and not restarted["ok"]:
            click.echo(f"ALARM restart: {restarted['detail']}")
        delivery_alarms = (d.get("delivery") or {}).get("alarms", [])
        for alarm in d.get("alarms", [])[-3:] + delivery_alarms[-3:]:
            click.echo(f"ALARM {alarm['kind']}: {alarm['detail']}")
        for line in _sync_alarms(d):
            click.echo(line)
        table = Table("peer", "machine id", "version", "reachable", "rtt ms", "last seen", box=None)
        for p in d["peers"]:
            rtt = "-" if p["rtt_ms"] is None else f"{p['rtt_ms']:.1f}"
            seen = (
                "never"
                if p["last_seen_ms_ago"] is None
                else f"{p['last_seen_ms_ago'] / 1000:.1f} s ago"
            )
            reachable = "yes" if p["reachable"] else "NO"
            version = p.get("version") or "?"
            table.add_row(p["nickname"] or "?", p["machine_id"], version, reachable, rtt, seen)
        if d["peers"]:
            Console().print(table)
        else:
            click.echo("no peers yet")

    ctx.emit(data, human)
