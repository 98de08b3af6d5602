"""`baton secrets set|list|rm` on a real home: values from standard input only, never
shown; bad names and unknown secrets are clean errors; and the agent's environment
gets only the secrets agent_secrets names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from baton.adapters.metrics import Counters
from baton.cli.commands import main
from baton.core.knobs import resolve_settings
from baton.stores.home import HomePaths
from baton.stores.identity_store import create_home
from baton.stores.secret_store import SecretStore

VALUE = "sk-live-0123456789abcdef"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    create_home(tmp_path / "home", "laptop")
    return tmp_path / "home"


def baton(home: Path, *args: str, value: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--home", str(home)], input=value)
    return result.exit_code, result.output


def test_set_list_and_remove_never_show_a_value(home: Path) -> None:
    assert baton(home, "secrets", "set", "API_KEY", value=VALUE + "\n") == (
        0,
        "secret API_KEY set\n",
    )
    code, out = baton(home, "secrets", "list", "--json")
    [row] = json.loads(out)
    assert code == 0 and row["name"] == "API_KEY" and set(row) == {"name", "set_by", "set_at"}
    assert VALUE not in out and VALUE not in baton(home, "secrets", "list")[1]
    stored = SecretStore(HomePaths(home), "m_aaaaaaaaaaaaaaaa").all()
    assert stored["API_KEY"].value == VALUE  # newline dropped
    assert baton(home, "secrets", "rm", "API_KEY", "--json") == (
        0,
        json.dumps({"name": "API_KEY", "removed": True}, indent=2) + "\n",
    )
    assert baton(home, "secrets", "list") == (0, "no secrets\n")


def test_bad_names_and_unknown_secrets_are_clean_errors(home: Path) -> None:
    code, out = baton(home, "secrets", "set", "bad-name", "--json", value="x")
    assert code == 1 and json.loads(out)["error"] == "bad_secret"
    code, out = baton(home, "secrets", "rm", "NOPE", "--json")
    assert code == 1 and json.loads(out)["error"] == "no_such_secret"
    code, out = baton(home, "secrets", "set", "EMPTY", "--json", value="")
    assert code == 1 and json.loads(out)["error"] == "bad_secret"


def test_a_damaged_store_says_so_and_stays(home: Path) -> None:
    baton(home, "secrets", "set", "API_KEY", value=VALUE)
    sealed = HomePaths(home).data_dir / "secrets.bin"
    sealed.write_bytes(sealed.read_bytes()[:-1] + b"\0")
    before = sealed.read_bytes()
    code, out = baton(home, "secrets", "set", "OTHER", "--json", value="x")
    assert code == 1 and json.loads(out)["error"] == "secrets_corrupt"
    assert sealed.read_bytes() == before


def test_the_agent_gets_only_the_secrets_named(home: Path) -> None:
    from baton.node.delivery_parts import agent_secrets

    paths = HomePaths(home)
    baton(home, "secrets", "set", "API_KEY", value=VALUE)
    baton(home, "secrets", "set", "OTHER", value="not for the agent")
    settings = resolve_settings({"agent_secrets": ["API_KEY", "NEVER_SET"]}, {}, {})
    counters = Counters()
    assert agent_secrets(settings, paths, "m_x", counters) == {"API_KEY": VALUE}
    assert counters.get("secrets.missing") == 1
    (paths.data_dir / "secrets.bin").write_bytes(b"garbage" * 10)
    assert agent_secrets(settings, paths, "m_x", counters) == {}
    assert counters.get("secrets.unavailable") == 1


def test_the_settings_refuse_bad_secret_names() -> None:
    from baton.core.errors import ConfigError

    for bad in (["lower"], ["BATON_TELEGRAM_TOKEN"], ["A-B"]):
        with pytest.raises(ConfigError, match="agent_secrets"):
            resolve_settings({"agent_secrets": bad}, {}, {})


def test_the_bot_token_comes_from_the_store_first(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from baton.node.delivery_parts import bot_token

    paths, counters = HomePaths(home), Counters()
    assert bot_token(paths, {}, "m_x", counters) is None
    with caplog.at_level("INFO", logger="baton.delivery"):
        assert bot_token(paths, {"BATON_TELEGRAM_TOKEN": "123:env"}, "m_x", counters) == "123:env"
    assert "baton secrets set TELEGRAM_BOT_TOKEN" in caplog.text
    assert "123:env" not in caplog.text
    baton(home, "secrets", "set", "TELEGRAM_BOT_TOKEN", value="123:stored")
    assert bot_token(paths, {"BATON_TELEGRAM_TOKEN": "123:env"}, "m_x", counters) == "123:stored"
