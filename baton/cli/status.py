"""`baton status`: the mesh as this machine sees it, on one screen, the alarms first.

It needs the running node (reachability and round trips are live facts). Colour where
the terminal takes it (none when piped, or with NO_COLOR set); `--watch` redraws it
every few seconds until Ctrl-C, and goes on through a node that does not answer for a
while (a restart); `--watch --json` prints one JSON document a line. This module loads
only click and the node client, so the command starts quickly (tools/bench/cli.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from baton.cli.support import Ctx, command, main
from baton.core import status_summary as summary
from baton.core.errors import BatonError
from baton.node.client import NodeClient

COLUMNS = ("machine", "role", "version", "reachable", "round trip", "in sync", "via", "last seen")


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
    holder = summary.name_of(d, d["holder"])
    return f"lease: standby, holder {holder}, epoch {d['epoch']}{after}; store {where}"


def _delivery_line(d: dict[str, Any] | None) -> str:
    if d is None:
        return "delivery: no channel (this machine answers nothing)"
    doing = f"answering (epoch {d['term']})" if d["term"] else "standing by"
    problem = summary.POLL_PROBLEMS.get(d.get("polling", ""))
    if d["term"] and problem:
        doing = f"holding epoch {d['term']} but {problem}"
    return (
        f"delivery: {doing} on {d['channel']} with {d['agent']}; "
        f"{summary.pending(d)} pending, {d['ledger'].get('acked', 0)} done, "
        f"{d['queued']} queued to send"
    )


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


def _version_line(v: dict[str, Any] | None) -> str | None:
    """This machine's version and the mesh's protocol (skew is an alarm)."""
    if not v:
        return None
    lo, hi = v["protocols"]
    speaks = f"protocol {lo}" if lo == hi else f"protocols {lo}-{hi}"
    return (
        f"version: baton {v['version']} ({speaks}); the mesh runs at protocol {v['mesh_protocol']}"
    )


def _handoff_line(h: dict[str, Any] | None) -> str | None:
    if not h or not h["recent"]:
        return None
    last = h["recent"][-1]
    return f"last handoff ({last['side']}): {last['kind']}: {last['detail']}"


def _rows(d: dict[str, Any]) -> list[tuple[str, ...]]:
    """The mesh table: this machine first, then its peers."""

    def said(value: bool | None) -> str:
        return "-" if value is None else ("yes" if value else "NO")

    rows: list[tuple[str, ...]] = []
    for m in summary.machine_rows(d):
        name = m["nickname"] + (" (this)" if m["this"] else "")
        reachable, synced = said(m["reachable"]), said(m["in_sync"])
        row = (name, m["role"], m["version"], reachable, m["rtt"], synced, m["via"])
        rows.append((*row, m["seen"]))
    return rows


def render(d: dict[str, Any], style: Callable[..., str]) -> list[str]:
    """The screen, line by line; ``style`` is click.style (or a no-op)."""
    role = style(d["role"].upper(), fg="green" if d["role"] == "awake" else "cyan", bold=True)
    holder = summary.name_of(d, d.get("holder"))
    lines = [
        f"{style(d['nickname'], bold=True)} ({d['machine_id']}) is {role}; "
        f"holder {holder}, epoch {d['epoch']}; up {d['uptime_s']:.0f} s"
    ]
    lines += [style(f"ALARM {a.kind}: {a.detail}", fg="red", bold=True) for a in summary.alarms(d)]
    parts = (
        _lease_line(d),
        _delivery_line(d.get("delivery")),
        _tail_line(d.get("tail")),
        _handoff_line(d.get("handoff")),
        _pool_line(d.get("pool")),
        _features_line(d.get("features")),
        _version_line(d.get("versions")),
    )
    lines += [line for line in parts if line]
    rows = [COLUMNS, *_rows(d)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        text = "  ".join(cells).rstrip()
        lines.append(style(text, bold=True) if n == 0 else _mark(text, row, style))
    return lines


def _mark(text: str, row: tuple[str, ...], style: Callable[..., str]) -> str:
    bad = "NO" in (row[3], row[5])
    return style(text, fg="red") if bad else text


def _plain(text: str, **_: Any) -> str:
    return text


@command(main, "status")
@click.option("--watch", is_flag=True, help="Redraw every few seconds until Ctrl-C.")
@click.option(
    "--every",
    type=click.FloatRange(0.2, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between redraws under --watch.",
)
def status(ctx: Ctx, watch: bool, every: float) -> None:
    """The mesh as this machine sees it, on one screen, the alarms first.

    Needs the running node. Coloured on a terminal (not with NO_COLOR set or when
    piped). With --watch it follows the node until Ctrl-C; with --json as well, one
    JSON document a line.
    """
    client = NodeClient(ctx.home)
    colour = False if os.environ.get("NO_COLOR") else None
    style = _plain if colour is False else click.style
    if not watch:
        data = client.get("/api/status")
        ctx.emit(data, lambda d: click.echo("\n".join(render(d, style)), color=colour))
        return
    try:
        while True:
            if not _show_once(ctx, client, style, colour):
                client = _client_again(ctx, client)
            time.sleep(every)  # the watch's pace, until Ctrl-C
    except KeyboardInterrupt:
        sys.exit(0)


def _client_again(ctx: Ctx, client: NodeClient) -> NodeClient:
    """A client from the run file as it is now: a node restarted may listen elsewhere
    (--http HOST:0); the old client while none runs."""
    try:
        return NodeClient(ctx.home)
    except BatonError:
        return client


def _show_once(
    ctx: Ctx, client: NodeClient, style: Callable[..., str], colour: bool | None
) -> bool:
    """One look; False if the node did not answer (said so, and tried again later)."""
    try:
        data = client.get("/api/status")
    except BatonError as exc:
        if ctx.as_json:
            click.echo(json.dumps({"error": exc.code, "detail": exc.detail}), color=colour)
        else:
            click.echo(f"baton: {exc.detail} (trying again)", err=True)
        return False
    if ctx.as_json:
        click.echo(json.dumps(data), color=colour)
        return True
    if sys.stdout.isatty():
        click.clear()
    lines = render(data, style)
    lines[0] += f"  [{time.strftime('%H:%M:%S')}]"
    click.echo("\n".join(lines), color=colour)
    return True
