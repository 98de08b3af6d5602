"""What an agent can reach (issue 16): a clean environment, a working directory of its
own, and under bubblewrap not the machine's home. Real worker processes, a real cmd
agent that reports what it sees, a real bwrap where installed (CI installs it)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton.agents.base import AgentMessage
from baton.agents.isolation import agent_environment, prepare_workdir, sandbox_prefix
from baton.agents.runner import AgentRunner
from baton.core.errors import ConfigError
from baton.core.knobs import resolve_settings

pytestmark = pytest.mark.timeout(60)

SNOOP = """\
import json, os, sys
json.load(sys.stdin)
def can_read(path):
    try:
        with open(path, "rb") as f:
            return len(f.read()) > 0
    except OSError:
        return False
def can_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return True
    except OSError:
        return False
def can_connect(path):
    import socket
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
        return True
    except OSError:
        return False
seen = {
    "ssh": can_read(sys.argv[3]),
    "socket": can_connect(sys.argv[4]),
    "env": sorted(os.environ),
    "cwd": os.getcwd(),
    "key": can_read(sys.argv[1]),
    "write_home": can_write(sys.argv[2]),
    "write_workdir": can_write("mine.txt"),
    "write_state": can_write(os.path.join(os.environ.get("AGENT_STATE_DIR", "/nowhere"), "s.txt")),
    "read_archive": can_read(os.path.join(os.environ.get("AGENT_STATE_DIR", "/nowhere"),
                                          "transcripts", "t", "000000.jsonl")),
    "write_archive": can_write(os.path.join(os.environ.get("AGENT_STATE_DIR", "/nowhere"),
                                            "transcripts", "t", "000000.jsonl")),
    "pid1": open("/proc/1/cmdline", "rb").read().split(b"\\0")[0].decode(errors="replace"),
}
print(json.dumps({"replies": [json.dumps(seen)]}))
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "machine").mkdir(parents=True, mode=0o700)
    (home / "machine" / "signing.key").write_bytes(b"secret key material")
    return home


@pytest.fixture
def user_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The node's user's own home, with a secret of its own (not baton's)."""
    user_home = tmp_path_factory.mktemp("user-home")
    (user_home / ".ssh").mkdir()
    (user_home / ".ssh" / "id_ed25519").write_text("the user's ssh key")
    return user_home


@pytest.fixture
def outside_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A unix socket that a program outside listens on (tmux, ssh-agent, a bus...)."""
    path = tmp_path_factory.mktemp("sockets") / "outside.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen(8)
        yield path


@pytest.fixture
def snoop(tmp_path: Path, home: Path, user_home: Path, outside_socket: Path) -> str:
    script = tmp_path / "snoop.py"
    script.write_text(SNOOP)
    key, planted = home / "machine" / "signing.key", home / "machine" / "planted"
    ssh = user_home / ".ssh" / "id_ed25519"
    return f"cmd:{shlex.quote(sys.executable)} {script} {key} {planted} {ssh} {outside_socket}"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("BATON_HOME", str(home))
    monkeypatch.setenv("BATON_TELEGRAM_TOKEN", "123:secret")
    monkeypatch.setenv("MY_API_KEY", "for-the-agent")
    monkeypatch.setenv("UNLISTED", "not-for-the-agent")


def run(
    spec: str,
    home: Path,
    sandbox: str,
    names: tuple[str, ...] = (),
    user_home: Path | None = None,
    *,
    state_dir: Path | None = None,
) -> dict[str, Any]:
    workdir = prepare_workdir(home)
    runner = AgentRunner(
        spec,
        workers=1,
        env=agent_environment(os.environ, names, workdir, state_dir),
        cwd=workdir,
        prefix=sandbox_prefix(
            sandbox, home, workdir, spec, user_home=user_home, state_dir=state_dir
        ),
    )
    runner.start()
    try:
        [reply] = runner.run(AgentMessage("t", 1, "hi", "u"), [])
    finally:
        runner.stop()
    return dict(json.loads(reply))


def test_an_agent_gets_only_the_variables_named_and_its_own_directory(
    home: Path, snoop: str, secrets: None
) -> None:
    seen = run(snoop, home, "none", ("MY_API_KEY", "BATON_TELEGRAM_TOKEN"))
    assert "MY_API_KEY" in seen["env"] and "UNLISTED" not in seen["env"]
    assert not [n for n in seen["env"] if n.startswith("BATON_")]  # never, even if named
    assert seen["cwd"] == str((home / "agent").resolve())
    assert seen["write_workdir"] and (home / "agent" / "mine.txt").exists()
    assert oct((home / "agent").stat().st_mode & 0o777) == "0o700"
    # without a sandbox the user's files are the agent's too: documented, not hidden
    assert seen["key"] is True and seen["ssh"] is True and seen["socket"] is True


needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (CI installs it)"
)


@needs_bwrap
def test_under_bwrap_the_home_is_hidden_and_only_the_working_directory_is_writable(
    home: Path, snoop: str, secrets: None, user_home: Path
) -> None:
    seen = run(snoop, home, "bwrap", ("MY_API_KEY",), user_home)
    assert seen["key"] is False and seen["write_home"] is False
    assert seen["ssh"] is False  # the user's own home is hidden too
    assert seen["socket"] is False  # and the sockets under /tmp (tmux, ssh-agent...)
    assert not (home / "machine" / "planted").exists()
    assert seen["write_workdir"] and (home / "agent" / "mine.txt").exists()
    assert "MY_API_KEY" in seen["env"] and "BATON_HOME" not in seen["env"]
    assert "baton" not in seen["pid1"]  # its own process namespace: the node is not in it


@pytest.mark.parametrize("sandbox", ["none", pytest.param("bwrap", marks=needs_bwrap)])
def test_the_state_directory_is_named_to_the_agent_and_writable_even_under_bwrap(
    home: Path, snoop: str, secrets: None, user_home: Path, sandbox: str
) -> None:
    state = home / "state"
    (state / "transcripts" / "t").mkdir(mode=0o700, parents=True)
    part = state / "transcripts" / "t" / "000000.jsonl"
    part.write_text("the holder's\n")
    seen = run(snoop, home, sandbox, (), user_home, state_dir=state)
    assert seen["write_state"] and (state / "s.txt").read_text() == "x"
    assert "AGENT_STATE_DIR" in seen["env"] and seen["write_workdir"]
    assert seen["key"] is (sandbox == "none")  # the state directory opens nothing else
    # the transcript archive: read by the agent, written only by the holder (under bwrap)
    assert seen["read_archive"] is True
    assert seen["write_archive"] is (sandbox == "none")
    assert part.read_text() == ("x" if sandbox == "none" else "the holder's\n")


def test_without_a_state_directory_the_agent_is_told_none(home: Path, snoop: str) -> None:
    seen = run(snoop, home, "none")
    assert "AGENT_STATE_DIR" not in seen["env"] and seen["write_state"] is False


def test_the_settings_refuse_baton_names_bad_names_and_unknown_sandboxes() -> None:
    ok = resolve_settings({"agent_env": ["OPENAI_API_KEY"], "agent_sandbox": "bwrap"}, {}, {})
    assert ok.agent_env == ("OPENAI_API_KEY",) and ok.agent_sandbox == "bwrap"
    for bad in ({"agent_env": ["BATON_TELEGRAM_TOKEN"]}, {"agent_env": ["A B"]},
                {"agent_sandbox": "docker"}):  # fmt: skip
        with pytest.raises(ConfigError) as info:
            resolve_settings(bad, {}, {})
        assert info.value.knob in bad  # type: ignore[attr-defined]


def test_an_unknown_or_missing_sandbox_is_a_config_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError):
        sandbox_prefix("docker", home, home / "agent")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="apt install bubblewrap"):
        sandbox_prefix("bwrap", home, home / "agent")
