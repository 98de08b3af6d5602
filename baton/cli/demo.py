"""`baton demo`: three machines on loopback keep baton's promise through a kill -9, a
planned handoff and a pause, under load, and the run is judged (baton.demo.scenario).

Exit 0 when every promise was kept; 1 when one was broken; 2 when the demo could not
finish (a step timed out: the summary's ``error`` says which). Ctrl-C stops it (130) and
cleans up all the same, and so do SIGTERM and SIGHUP.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.live import Live

from baton.cli.support import main
from baton.demo.kit import interrupted_by_signals
from baton.demo.scenario import FAILED, SINKS, Demo, combine
from baton.demo.view import render, summary_table


@main.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print only the summary, as JSON.")
@click.option("--keep", is_flag=True, help="Keep the run's directory (history, logs).")
@click.option(
    "--sink",
    type=click.Choice(["both", *SINKS]),
    default="both",
    show_default=True,
    help="The chat service's mode: telegram (forgives nothing: no reply keys, no "
    "fencing, as Telegram), fencing (refuses stale epochs, knows reply keys), or both "
    "in turn.",
)
def demo(as_json: bool, keep: bool, sink: str) -> None:
    """Show a mesh of 3 machines failing over, handing off, pausing and moving a topic.

    The move is said in the chat ("move this to charlie", the pool), all under load.

    Everything runs on loopback in a temporary directory: a chat service, a git lease
    store (a bare repository) and three machines paired with real codes. Runs once
    against a chat service that behaves like Telegram (it forgives nothing) and once
    against one that fences (about half a minute each); ends with a summary (messages,
    replies, lost, duplicated, stale sends refused, failover and handoff times,
    transcript loss).
    """
    console = Console(stderr=as_json)
    live = console.is_terminal and not as_json

    def on_step(title: str, outcome: str) -> None:
        if live:
            return
        if title == FAILED:
            line = f"failed: {outcome}"
        else:
            line = f"{'done' if outcome else 'step'}: {title}" + (f": {outcome}" if outcome else "")
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    sinks = SINKS if sink == "both" else (sink,)
    runners = [Demo(keep=keep, on_step=on_step, sink=name) for name in sinks]
    now = runners[:1]  # the run the live view shows

    def run_all() -> dict[str, Any]:
        done: dict[str, dict[str, Any]] = {}
        for runner in runners:
            now[0] = runner
            done[runner.sink] = runner.main()
        return done[sinks[0]] if len(done) == 1 else combine(done)

    try:
        with interrupted_by_signals():
            if live:
                view = Live(
                    get_renderable=lambda: render(now[0].progress),
                    console=console,
                    refresh_per_second=4,
                )
                with view:
                    summary = run_all()
            else:
                summary = run_all()
    except KeyboardInterrupt:  # main() has cleaned up on its way out
        console.print("interrupted; everything the demo started is stopped")
        sys.exit(130)
    code = 0 if summary["ok"] else 2 if "error" in summary else 1
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        console.print(summary_table(summary))
        verdict = {0: "every promise kept", 1: "A PROMISE WAS BROKEN"}
        console.print(
            verdict.get(code, f"the demo could not finish: {summary.get('error')}"),
            style="bold green" if code == 0 else "bold red",
            markup=False,
        )
    sys.exit(code)
