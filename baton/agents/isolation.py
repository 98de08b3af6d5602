"""What an agent can reach: its environment, its working directory and, on request, a
bubblewrap sandbox that hides this machine's home from it.

Issue 16: a ``cmd:`` agent ran as the node's user with the node's whole environment
(``BATON_HOME``, ``BATON_TELEGRAM_TOKEN``) in the node's working directory, and read
``machine/signing.key``, ``machine/encryption.key`` and ``machine/api-token``. An agent
that a chat message talks into reading them owns the mesh.

Every agent worker (and the program a ``cmd:`` agent runs) now gets:
- **a clean environment**: ``BASE_ENV`` from the node's, the names the operator lists in
  ``agent_env`` (never a ``BATON_*`` one), ``HOME`` and ``TMPDIR`` in its working
  directory (unless ``agent_env`` names them: an agent that needs the user's own
  configuration), and the ``PYTHONPATH`` the worker needs to import baton;
- **a working directory of its own**: ``<home>/agent`` (0700), its current directory;
- **its state directory**: ``<home>/state`` in ``AGENT_STATE_DIR`` when the mesh syncs
  state (StateSync): what it writes there follows the awake role.

With ``agent_sandbox = "bwrap"`` the worker runs under bubblewrap (Debian's
``bubblewrap``): the whole filesystem read-only; empty directories over ``/tmp``,
``/var/tmp``, ``/run`` (and the sockets there: tmux, ssh-agent, the user's bus, docker)
and the user's home (``~/.ssh``, ``~/.git-credentials``), with Python's prefixes, its
import path and the directories of a ``cmd:`` agent's program and of the script it
names first (``cmd:python3 /path/agent.py``) bound back read-only; the baton home
replaced by an empty directory but for the agent's working and state directories
(read-write; the transcript archive in the state directory, ``transcripts/``, read-only:
the agent reads its history there but cannot rewrite it); its
own process, IPC, host-name, cgroup and (where allowed) user namespaces and session (it
cannot see or signal the node, nor read its /proc environ, nor push input to a
terminal); the network shared (agents call APIs: abstract unix sockets stay reachable
with it); and it dies with the node. Without it
(``"none"``, the default) the agent can still read whatever this user can, the keys
included: documented in docs/threat-model.md.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from baton.agents.base import STATE_ENV
from baton.core.errors import ConfigError
from baton.core.settings import SANDBOXES
from baton.core.transcript_archive import DIR as ARCHIVE_DIR

BASE_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
KNOB = "agent_sandbox"


def agent_environment(
    source: Mapping[str, str], names: Iterable[str], workdir: Path, state_dir: Path | None = None
) -> dict[str, str]:
    """The environment an agent gets: BASE_ENV and ``names`` as far as ``source`` has
    them (never a BATON_* one), HOME and TMPDIR in ``workdir`` unless named, and the
    state directory (synchronized, StateSync) in STATE_ENV when there is one."""
    keep = [n for n in (*BASE_ENV, *names) if not n.startswith("BATON_")]
    env = {n: source[n] for n in keep if n in source}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("HOME", str(workdir))  # unless the operator named HOME or TMPDIR
    env.setdefault("TMPDIR", str(workdir / "tmp"))
    if state_dir is not None:
        env[STATE_ENV] = str(state_dir)
    return env


def prepare_workdir(home: Path) -> Path:
    """``<home>/agent`` and its tmp/, private (0700); the agent's working directory."""
    workdir = home / "agent"
    (workdir / "tmp").mkdir(mode=0o700, parents=True, exist_ok=True)
    workdir.chmod(0o700)
    return workdir


HIDDEN = ("/tmp", "/var/tmp", "/run")  # sockets (tmux, ssh-agent, the user bus, docker...)


def sandbox_prefix(
    mode: str,
    home: Path,
    workdir: Path,
    agent: str = "",
    *,
    user_home: Path | None = None,
    state_dir: Path | None = None,
) -> list[str]:
    """The command that runs a worker in ``mode`` (empty for none); ConfigError when
    the mode is unknown or its tool is missing. See the module's docstring."""
    if mode == "none":
        return []
    if mode != "bwrap":
        raise ConfigError(KNOB, f"must be one of {', '.join(SANDBOXES)}, got {mode!r}")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ConfigError(KNOB, "bwrap is not installed (Debian: apt install bubblewrap)")
    home, workdir = home.resolve(), workdir.resolve()
    user_home = (user_home or Path.home()).resolve()
    candidates = (*map(Path, HIDDEN), user_home)
    hidden = sorted(
        {p.resolve() for p in candidates if p.is_dir() and not p.is_symlink() and p != Path("/")}
    )
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for path in hidden:  # the user's files and every socket under them: gone
        argv += ["--tmpfs", str(path)]
    for path in _needed(agent):  # but what the worker runs from, read-only
        if any(path.is_relative_to(h) for h in hidden) and not path.is_relative_to(home):
            argv += ["--ro-bind-try", str(path), str(path)]
    argv += ["--tmpfs", str(home)]  # the keys, the tokens, the ledger: gone
    for writable in (workdir, *([] if state_dir is None else [state_dir.resolve()])):
        argv += ["--bind", str(writable), str(writable)]
    if state_dir is not None:  # the transcript archive: the holder's to write, not the agent's
        archive = str(state_dir.resolve() / ARCHIVE_DIR)
        argv += ["--ro-bind-try", archive, archive]
    argv += [
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--unshare-user-try", "--new-session", "--die-with-parent",
        "--chdir", str(workdir), "--",
    ]  # fmt: skip
    return argv


def _needed(agent: str) -> list[Path]:
    """What a worker must still see: Python's prefixes and import path, and for a
    ``cmd:`` agent the directories of its program and of the script it names first."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    paths |= {Path(p) for p in sys.path if p and Path(p).is_absolute()}
    paths |= {Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    if agent.startswith("cmd:"):  # the program, and the script an interpreter runs
        with contextlib.suppress(ValueError):
            words = shlex.split(agent[4:])[:2]
            program = shutil.which(words[0]) if words else None
            script = words[1] if len(words) > 1 and words[1].startswith("/") else None
            for found in (program, script):
                if found and Path(found).is_file():
                    paths.add(Path(found).parent)
    return sorted(p.resolve() for p in paths if p.exists())
