"""The git command line, run the one way baton runs it: with a deadline, in a process
group of its own, on transports that run no command of the URL's choosing.

Invariants:
- Every git ends within ``timeout_s`` plus a second: on the deadline its whole process
  group (git, ssh, remote helpers) gets SIGTERM, so git removes its lock files, and
  SIGKILL a second later; the caller then gets ``error``, never a hang.
- Only ALLOWED_PROTOCOLS, whatever a user's gitconfig allows: never ``ext::`` or
  ``fd::``, which run a command named in the URL (a remote's URL may come from a host).
- git never prompts (no terminal, no credential prompt) and speaks C locale, so its
  messages can be matched. Its output is read as UTF-8 with undecodable bytes kept as
  surrogates: a file name or commit message that is not UTF-8 is data, never a crash.
- A URL is shown (in errors, logs, status) without its user and password: ``shown``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from baton.core.errors import BatonError

ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
# neither the user's nor the system's gitconfig: what baton reads and commits is its own
WITHOUT_USER_CONFIG = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def push_guard(url: str) -> list[str]:
    """Options for a push to ``url``. To a file:// remote git runs receive-pack here, as
    this user, with the remote's hooks: whoever can write that directory would run code
    on this machine, so hooks are off for it. A server's receive-pack (ssh, https) is
    the server's, and a restricted shell there takes only the plain command. Nor does
    the remote's config name a command to run (``core.alternateRefsCommand``, which
    receive-pack runs for a repository with alternates)."""
    if url.startswith("file://"):
        quiet = "-c core.hooksPath=/dev/null -c core.alternateRefsCommand=true"
        return [f"--receive-pack=git {quiet} receive-pack"]
    return []


def run_git(
    args: list[str],
    *,
    cwd: Path,
    timeout_s: float,
    error: Callable[[str], BatonError],
    env: Mapping[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``git ARGS`` in ``cwd``; its exit code is the caller's to judge. Raises
    ``error(detail)`` when git cannot be run or does not end in time."""
    full = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    full.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    full["GIT_ALLOW_PROTOCOL"] = ALLOWED_PROTOCOLS
    try:
        proc = subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            env=full,
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="surrogateescape",
            start_new_session=True,
        )
    except OSError as exc:
        raise error(f"cannot run git: {exc}") from None
    try:
        out, err = proc.communicate(input, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        raise error(f"git {_verb(args)} took longer than {timeout_s:g} s") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def first_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """What a failed git said first (or its exit code)."""
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    return lines[0] if lines else f"git exited {proc.returncode}"


def _verb(args: list[str]) -> str:
    """The git command of ``args`` (``push``), past ``-c NAME=VALUE`` and options."""
    given = iter(args)
    for arg in given:
        if arg == "-c":
            next(given, None)
        elif not arg.startswith("-"):
            return arg
    return "(no command)"


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def shown(url: str) -> str:
    """``url`` without a user or password in it (``https://***@host/...``)."""
    return _USERINFO.sub("***@", url)
