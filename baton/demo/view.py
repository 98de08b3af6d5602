"""The live view of `baton demo` (rich): the machines' roles and epochs, the load, and
the steps so far; and the summary table at the end. Reads the demo's Progress only."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from baton.demo.scenario import Progress

ROLE_STYLE = {"awake": "bold green", "standby": "cyan"}


def machines(p: Progress) -> Table:
    table = Table(title="machines", title_justify="left")
    for column in ("machine", "role", "epoch", "sees awake", "note"):
        table.add_column(column)
    if p.run is None:
        return table
    views = dict(p.watcher.views) if p.watcher else {}
    names = {v["machine_id"]: n for n, v in views.items() if v}
    for m in p.run.mesh.machines:
        view = views.get(m.name)
        note = p.notes.get(m.name, "")
        if view is None:
            table.add_row(m.name, Text("-", "dim"), "", "", note or "not answering")
            continue
        role = str(view["role"])
        holder = names.get(view.get("holder") or "", "")
        styled = Text(role, ROLE_STYLE.get(role, ""))
        table.add_row(m.name, styled, str(view["epoch"]), holder, note)
    return table


def render(p: Progress) -> RenderableType:
    parts: list[RenderableType] = [Text("baton demo: one agent, three machines", "bold")]
    parts.append(machines(p))
    if p.loader is not None:
        posted = len(p.run.history.of("posted")) if p.run else 0
        parts.append(Text(f"load: {posted} messages posted", "dim"))
    for title, outcome in p.steps:
        mark = Text("✓ " if outcome else "… ", "green" if outcome else "yellow")
        line = mark + Text(title)
        if outcome:
            line += Text(f" — {outcome}", "dim")
        parts.append(line)
    return Group(*parts)


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="summary", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if key in ("examples", "sinks"):
            continue
        bad = key in (
            "lost", "duplicated", "stale_accepted", "overlapping", "epochs_backwards", "state_lost"
        )  # fmt: skip
        style = "bold red" if (bad and value) or (key == "ok" and not value) else ""
        table.add_row(key, Text(str(value), style))
    return table
