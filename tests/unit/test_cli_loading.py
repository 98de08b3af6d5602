"""The command line loads a command's modules only when that command runs: the table
of commands (baton.cli.support.COMMANDS) names every command there is, and the quick
commands never load the node, the HTTP stack, the wire or git."""

from __future__ import annotations

import json
import subprocess
import sys

import click
from click.testing import CliRunner

from baton.cli import commands
from baton.cli.support import COMMANDS

HEAVY = ("flask", "waitress", "werkzeug", "zmq", "pykka", "git", "spake2", "baton.node.root")


def test_the_table_names_every_command_and_only_those() -> None:
    assert set(COMMANDS) == set(commands.main.commands)
    machines = commands.main.commands["machines"]
    assert isinstance(machines, click.Group)
    assert {"add", "remove", "list"} <= set(machines.commands)


def test_the_table_says_what_each_command_says_of_itself() -> None:
    """`baton --help` lists the table's summaries: each is its command's first sentence."""
    for name, (_, summary) in COMMANDS.items():
        assert commands.main.commands[name].get_short_help_str(limit=1000) == summary, name


def test_help_lists_every_command_and_loads_none() -> None:
    out = subprocess.run(
        [sys.executable, "-P", "-m", "baton", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for name, (_, summary) in COMMANDS.items():
        assert f"  {name} " in out and summary.split()[0] in out, name
    code = (
        "import sys\nfrom baton.cli.support import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('baton.cli.')))"
    )
    loaded = (
        subprocess.run(
            [sys.executable, "-P", "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert loaded == "['baton.cli.support']"


def test_every_command_in_the_table_answers_help() -> None:
    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(commands.main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "--help" in result.output, name


def loaded_by(*args: str) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after `baton ARGS`."""
    code = (
        "import sys, json\n"
        "from baton.cli.support import main\n"
        "try:\n"
        f"    main({list(args)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "                        or m in heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


def test_the_quick_commands_load_nothing_heavy(tmp_path: object) -> None:
    home = str(tmp_path)
    quick = (["whoami", "--home", home], ["status", "--home", home], ["ui", "--home", home])
    for args in (*quick, ["init", "--help"], ["--help"]):
        assert loaded_by(*args) == [], args
    assert loaded_by("up", "--help") == []  # the supervisor loads the node in its child


def test_a_command_loads_its_own_module_when_asked_for() -> None:
    assert "flask" in loaded_by("chat-server", "--help")  # the chat service is a Flask app
