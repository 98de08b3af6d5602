"""`baton init`, `baton up`, `baton down`: create a machine, run it, stop it."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

import click

from baton.adapters import limits
from baton.adapters.logs import STDERR_ENV, setup_logging
from baton.cli.support import (
    ADVERTISE_HELP,
    HTTP_HELP,
    LISTEN_HELP,
    WIRE_HELP,
    Ctx,
    command,
    config_values,
    fail,
    main,
)
from baton.core.errors import BatonError, NodeNotRunning
from baton.core.identity import fingerprint
from baton.core.knobs import flag_name, resolve_settings
from baton.node.client import http_json, running_node
from baton.stores.config_file import load_settings, render_config
from baton.stores.home import HomePaths
from baton.stores.identity_store import create_home, load_identity
from baton.stores.runfile import lock_holder, read_run_file


@command(main, "init")
@click.option(
    "--name", required=True, help="This machine's nickname: lowercase letters, digits, '-'."
)
@click.option("--http", "http_", default=None, help=HTTP_HELP + " Written to config.toml.")
@click.option("--wire", default=None, help=WIRE_HELP + " Written to config.toml.")
@click.option("--listen", default=None, help=LISTEN_HELP + " Written to config.toml.")
@click.option("--advertise", default=None, help=ADVERTISE_HELP + " Written to config.toml.")
@click.option(
    "--lease-store",
    default=None,
    help="Where the mesh decides who is awake: a git URL with git+ in front, e.g. "
    "git+file:///srv/mesh.git (created if it is a missing local path) or "
    "git+ssh://host/mesh.git, or an etcd cluster: etcd+http://host:2379. Without one "
    "there is no automatic failover.",
)
@click.option(
    "--channel",
    default=None,
    help="Where messages come from and replies go: local:http://HOST:PORT (the bundled "
    "chat service, `baton chat-server`), telegram (the Bot API; token in "
    "BATON_TELEGRAM_TOKEN or machine/telegram-token) or telegram:URL. Without one this "
    "machine answers nothing.",
)
@click.option(
    "--agent",
    default=None,
    help="Who answers: echo (default), cmd:PROGRAM [ARGS] (JSON on stdin and stdout) or "
    "python:module:function.",
)
def init(
    ctx: Ctx,
    *,
    name: str,
    http_: str | None,
    wire: str | None,
    listen: str | None,
    advertise: str | None,
    lease_store: str | None,
    channel: str | None,
    agent: str | None,
) -> None:
    """Create this machine: keys, identity, API token and config.toml in its home.

    Refuses to touch a home that already holds an identity; leaves nothing behind
    when it fails. Machines that join later get the lease store from this one.
    """
    given = {
        "http": http_,
        "wire": wire,
        "listen": listen,
        "advertise": advertise,
        "lease_store": lease_store,
        "channel": channel,
        "agent": agent,
    }
    values = config_values(given)
    resolve_settings(values, {}, {})  # refuse a bad knob before anything is written
    if lease_store and not lease_store.startswith("etcd+"):
        from baton.stores.git_lease import ensure_git_remote  # GitPython: only here

        ensure_git_remote(lease_store)
    identity = create_home(ctx.home, name, render_config(values))
    me = identity.public
    ctx.emit(
        {
            "machine_id": me.machine_id,
            "nickname": me.nickname,
            "home": str(ctx.home),
            "signing_fingerprint": fingerprint(me.signing_public),
            "encryption_fingerprint": fingerprint(me.encryption_public),
        },
        lambda d: click.echo(
            f"created {d['nickname']} ({d['machine_id']}) in {d['home']}\n"
            f"  signing key    {d['signing_fingerprint']}\n"
            f"  encryption key {d['encryption_fingerprint']}\n"
            f"start it with: baton up --home {d['home']}"
        ),
    )


@command(main, "up")
@click.option("--http", "http_", default=None, help=HTTP_HELP)
@click.option("--wire", default=None, help=WIRE_HELP)
@click.option("--listen", default=None, help=LISTEN_HELP)
@click.option("--advertise", default=None, help=ADVERTISE_HELP)
@click.option("--detach", is_flag=True, help="Run in the background; return once /health answers.")
@click.option(
    "--timeout", default=60.0, show_default=True, help="Seconds --detach waits for the node."
)
def up(
    ctx: Ctx,
    *,
    http_: str | None,
    wire: str | None,
    listen: str | None,
    advertise: str | None,
    detach: bool,
    timeout: float,
) -> None:
    """Run this machine's node under a supervisor (foreground unless --detach).

    The supervisor restarts the node after a crash and gives up after a crash loop.
    Ctrl-C or SIGTERM stops both in order.
    """
    os.umask(0o077)  # logs, run files and anything else written under the home stay private
    flags = {"http": http_, "wire": wire, "listen": listen, "advertise": advertise}
    settings = load_settings(ctx.home, os.environ, flags)  # fail fast, in this terminal
    load_identity(ctx.home)
    pid = lock_holder(ctx.paths.supervisor_lock)
    if pid is not None:
        fail(ctx, "already_running", f"baton is already running for {ctx.home} (pid {pid})")
    if detach:
        _up_detached(ctx, flags, timeout)
        return
    from baton.node.supervisor import Supervisor, end_resource_tracker  # only `up` needs it

    setup_logging(ctx.paths.logs_dir, "supervisor", settings.log_level)
    supervisor = Supervisor(ctx.home, flags, on_ready=lambda info: _print_up(ctx, info))
    code = supervisor.run()
    end_resource_tracker()
    if supervisor.error is not None and code != 0:
        fail(ctx, supervisor.error["error"], supervisor.error["detail"], code)
    sys.exit(code)


def _print_up(ctx: Ctx, info: dict[str, Any]) -> None:
    info = {k: v for k, v in info.items() if k != "ok"}
    ctx.emit(
        info,
        lambda d: click.echo(
            f"baton: node up (supervisor pid {d['supervisor_pid']}, node pid {d['pid']}), "
            f"http {d['http']}, wire {d['wire']}",
            err=True,
        ),
    )


def _up_detached(ctx: Ctx, flags: dict[str, str | None], timeout: float) -> None:
    cmd = [sys.executable, "-P", "-m", "baton", "up", "--home", str(ctx.home)]
    for knob, value in flags.items():
        if value is not None:
            cmd += [flag_name(knob), value]
    ctx.paths.logs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    out_path = ctx.paths.logs_dir / "supervisor.out"
    error_file = ctx.paths.last_error
    error_file.unlink(missing_ok=True)
    # it gets only what escapes logging (BATON_LOG_STDERR=0), and is rotated here
    with contextlib.suppress(FileNotFoundError):
        if out_path.stat().st_size > limits.LOG_FILE_BYTES:
            out_path.replace(out_path.with_name("supervisor.out.1"))
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    env = {**os.environ, STDERR_ENV: "0"}
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=env,
        )
    finally:
        os.close(out)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            last = read_run_file(error_file)
            if last:
                fail(ctx, last["error"], last["detail"], code)
            fail(
                ctx, "start_failed", f"the supervisor exited with code {code}; see {out_path}", code
            )
        info = running_node(ctx.paths)
        if info and info.get("supervisor_pid") == proc.pid and _healthy(info):
            ctx.emit(
                {
                    "pid": proc.pid,
                    "node_pid": info["pid"],
                    "machine_id": info["machine_id"],
                    "http": info["http"],
                    "wire": info["wire"],
                },
                lambda d: click.echo(
                    f"baton: running in the background, pid {d['pid']} (node {d['node_pid']}); "
                    f"http {d['http']}, wire {d['wire']}"
                ),
            )
            return
        time.sleep(0.1)
    proc.terminate()
    fail(
        ctx, "start_timeout", f"the node did not answer /health within {timeout} s; see {out_path}"
    )


def _healthy(info: dict[str, Any]) -> bool:
    try:
        health = http_json(info["http"] + "/health", timeout=2.0)
    except BatonError:
        return False
    return bool(health.get("ok")) and health.get("machine_id") == info.get("machine_id")


@command(main, "down")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait before killing.")
def down(ctx: Ctx, timeout: float) -> None:
    """Stop this machine's supervisor and node; returns once both processes have exited."""
    result = stop_node(ctx.paths, timeout)
    if not result["stopped"]:
        ctx.emit(result, lambda d: click.echo("baton: not running"))
        return
    ctx.emit(
        result,
        lambda d: click.echo("baton: stopped" + (" (had to kill it)" if d["killed"] else "")),
    )


def stop_node(paths: HomePaths, timeout: float) -> dict[str, Any]:
    """Stop the supervisor and node of a home; return once both processes have exited."""
    procs = _running_processes(paths)
    if not procs:
        return {"stopped": False, "running": False}
    try:
        # The supervisor stops the node in order; a node without one is told directly.
        target = procs.get("supervisor") or procs["node"]
        _send(target[1], signal.SIGTERM)
        killed = not _wait_exit([fd for _, fd in procs.values()], timeout)
        if killed:
            for _, fd in procs.values():
                _send(fd, signal.SIGKILL)
            if not _wait_exit([fd for _, fd in procs.values()], 10.0):
                raise NodeNotRunning(f"could not stop baton for {paths.root}")
    finally:
        for _, fd in procs.values():
            os.close(fd)
    return {
        "stopped": True,
        "killed": killed,
        "supervisor_pid": procs.get("supervisor", (None,))[0],
        "node_pid": procs.get("node", (None,))[0],
    }


def _running_processes(paths: HomePaths) -> dict[str, tuple[int, int]]:
    """{role: (pid, pidfd)} of the live supervisor and node of this home.

    A pidfd names one process for good, so a signal can never reach a later process
    that reused the pid; each is opened while that process still holds its lock.
    """
    found = {}
    for role, lock in (("supervisor", paths.supervisor_lock), ("node", paths.node_lock)):
        pid = lock_holder(lock)
        if pid is None or pid <= 0:
            continue
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        if lock_holder(lock) == pid:
            found[role] = (pid, fd)
        else:
            os.close(fd)
    return found


def _send(pidfd: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, sig)


def _wait_exit(pidfds: list[int], timeout: float) -> bool:
    """True once every process has exited (its pidfd turns readable)."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    left = set(pidfds)
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        for fd, _ in poller.poll(remaining * 1000):
            left.discard(fd)
            poller.unregister(fd)
    return True
