"""`baton doctor`: a plain verdict per line on what this machine needs to reach."""

from __future__ import annotations

import os
import sys

import click

from baton.cli.support import Ctx, command, main


@command(main, "doctor")
@click.option(
    "--timeout",
    default=3.0,
    show_default=True,
    type=click.FloatRange(min=0.1, max=60),
    help="Seconds each check may take.",
)
def doctor(ctx: Ctx, timeout: float) -> None:
    """Check every peer's endpoints, the lease store and the channel from here.

    Every peer on every endpoint it advertises (TCP, then a CURVE handshake with this
    machine's keys), the round trip the running node measures to each peer and where it
    answers, the lease store and the channel. Exits 1 when anything fails."""
    from baton.cli.doctor_checks import diagnose
    from baton.stores.config_file import load_settings
    from baton.stores.identity_store import load_identity

    settings = load_settings(ctx.home, os.environ, {})
    verdicts = diagnose(ctx.paths, settings, load_identity(ctx.home), timeout)
    ok = all(v.ok for v in verdicts)

    def human(_: object) -> None:
        for v in verdicts:
            mark = "ok  " if v.ok else "FAIL"
            click.echo(f"{mark}  {v.check:<11} {v.target}: {v.detail}")
        click.echo("all good" if ok else "something is wrong: see FAIL above")

    ctx.emit({"ok": ok, "checks": [v.to_dict() for v in verdicts]}, human)
    sys.exit(0 if ok else 1)
