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
- **a working directory of its own**: ``<home>/agent`` (0700), its current directory.

With ``agent_sandbox = "bwrap"`` the worker runs under bubblewrap (Debian's
``bubblewrap``): the whole filesystem read-only, the baton home replaced by an empty
directory but for the agent's working directory (read-write), its own process, IPC and
host-name namespaces (it cannot see or signal the node, nor read its /proc environ),
the network shared (agents call APIs), and it dies with the node. Without it
(``"none"``, the default) the agent can still read whatever this user can, the keys
included: documented in docs/threat-model.md.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from baton.core.errors import ConfigError
from baton.core.settings import SANDBOXES

BASE_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
KNOB = "agent_sandbox"


def agent_environment(
    source: Mapping[str, str], names: Iterable[str], workdir: Path
) -> dict[str, str]:
    """The environment an agent gets: BASE_ENV and ``names`` as far as ``source`` has
    them (never a BATON_* one), HOME and TMPDIR in ``workdir`` unless named."""
    keep = [n for n in (*BASE_ENV, *names) if not n.startswith("BATON_")]
    env = {n: source[n] for n in keep if n in source}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("HOME", str(workdir))  # unless the operator named HOME or TMPDIR
    env.setdefault("TMPDIR", str(workdir / "tmp"))
    return env


def prepare_workdir(home: Path) -> Path:
    """``<home>/agent`` and its tmp/, private (0700); the agent's working directory."""
    workdir = home / "agent"
    (workdir / "tmp").mkdir(mode=0o700, parents=True, exist_ok=True)
    workdir.chmod(0o700)
    return workdir


def sandbox_prefix(mode: str, home: Path, workdir: Path) -> list[str]:
    """The command that runs a worker in ``mode`` (empty for none); ConfigError when
    the mode is unknown or its tool is missing."""
    if mode == "none":
        return []
    if mode != "bwrap":
        raise ConfigError(KNOB, f"must be one of {', '.join(SANDBOXES)}, got {mode!r}")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ConfigError(KNOB, "bwrap is not installed (Debian: apt install bubblewrap)")
    home, workdir = home.resolve(), workdir.resolve()
    return [
        bwrap,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", str(home),  # the keys, the token, the ledger: gone
        "--bind", str(workdir), str(workdir),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent",
        "--chdir", str(workdir),
        "--",
    ]  # fmt: skip
