"""The settings object: layering, invariants, HostPort, and config.toml on disk."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.errors import ConfigError
from baton.core.knobs import KNOBS, env_name, resolve_settings
from baton.core.live_tail import DEFAULT_REDACTIONS
from baton.core.settings import RESERVED_ENV, HostPort, Settings
from baton.stores.config_file import load_settings, read_config, write_config


def resolve(
    file: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    flags: dict[str, object | None] | None = None,
) -> Settings:
    return resolve_settings(file or {}, env or {}, flags or {})


def refused(
    file: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    flags: dict[str, object | None] | None = None,
) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        resolve(file, env, flags)
    return info.value


# --- defaults and layering ----------------------------------------------------


def test_defaults() -> None:
    s = resolve()
    assert s.to_dict() == {
        "http": "127.0.0.1:8420",
        "wire": "127.0.0.1:8421",
        "listen": "",
        "door_port": 8422,
        "advertise": ["auto"],
        "lease_ttl_ms": 15000,
        "renew_interval_ms": 5000,
        "clock_rate_error": 0.01,
        "live_tail_flush_ms": 1000,
        "handoff_ack_timeout_ms": 5000,
        "ledger_retention_days": 7,
        "ledger_retention_entries": 100000,
        "ping_interval_ms": 1000,
        "max_frame_bytes": 1048576,
        "log_level": "info",
        "lease_store": "",
        "channel": "",
        "fence_probe_url": "",
        "state_remote": "",
        "state_sync_ms": 2000,
        "transcript_archive": "on",
        "agent": "echo",
        "agent_timeout_ms": 30000,
        "agent_retries": 2,
        "agent_workers": 2,
        "agent_env": [],
        "agent_secrets": [],
        "agent_sandbox": "none",
        "ambiguous_policy": "resend",
        "redact_patterns": ["default"],
        "fault_file": "",
    }
    assert s == Settings()


def test_redact_patterns_come_from_every_layer_and_must_compile() -> None:
    assert resolve().redactions == DEFAULT_REDACTIONS
    mine = resolve(file={"redact_patterns": ["default", "ticket-[0-9]+"]})
    assert mine.redactions == (*DEFAULT_REDACTIONS, "ticket-[0-9]+")
    env = {"BATON_REDACT_PATTERNS": '["x+"]'}
    assert resolve(env=env).redactions == ("x+",)
    assert resolve(flags={"redact_patterns": []}).redactions == ()
    assert refused(file={"redact_patterns": ["(unclosed"]}).knob == "redact_patterns"
    assert refused(file={"redact_patterns": "x+"}).knob == "redact_patterns"
    assert refused(env={"BATON_REDACT_PATTERNS": "x+"}).knob == "redact_patterns"


def test_knob_table_matches_settings_fields() -> None:
    assert set(KNOBS) == {f.name for f in dataclasses.fields(Settings)}


def test_to_dict_is_json_able() -> None:
    s = resolve(flags={"http": "[::1]:9000"})
    assert json.loads(json.dumps(s.to_dict()))["http"] == "[::1]:9000"


def test_file_overrides_default() -> None:
    assert resolve(file={"lease_ttl_ms": 30000}).lease_ttl_ms == 30000


def test_env_overrides_file() -> None:
    s = resolve(file={"lease_ttl_ms": 30000}, env={"BATON_LEASE_TTL_MS": "20000"})
    assert s.lease_ttl_ms == 20000


def test_flag_overrides_env_and_file() -> None:
    s = resolve(
        file={"http": "127.0.0.1:1"},
        env={"BATON_HTTP": "127.0.0.1:2"},
        flags={"http": "0.0.0.0:3"},
    )
    assert s.http == HostPort("0.0.0.0", 3)


def test_flag_none_means_not_given() -> None:
    s = resolve(env={"BATON_LOG_LEVEL": "debug"}, flags={"log_level": None})
    assert s.log_level == "debug"


def test_typed_flags_accepted() -> None:
    s = resolve(flags={"lease_ttl_ms": 60000, "wire": HostPort("10.0.0.1", 0)})
    assert (s.lease_ttl_ms, str(s.wire)) == (60000, "10.0.0.1:0")


def test_float_knob_from_env_and_int_from_file() -> None:
    assert resolve(env={"BATON_CLOCK_RATE_ERROR": "0.05"}).clock_rate_error == 0.05
    assert resolve(file={"clock_rate_error": 0}).clock_rate_error == 0.0


def test_log_level_is_case_insensitive() -> None:
    assert resolve(env={"BATON_LOG_LEVEL": "WARNING"}).log_level == "warning"


def test_lease_store_url_accepted() -> None:
    url = "git+file:///srv/baton/remote.git"
    assert resolve(file={"lease_store": url}).lease_store == url


def test_renew_default_follows_final_ttl() -> None:
    assert resolve(file={"lease_ttl_ms": 30000}).renew_interval_ms == 10000
    assert resolve(env={"BATON_LEASE_TTL_MS": "9000"}).renew_interval_ms == 3000
    assert resolve(flags={"lease_ttl_ms": 6001}).renew_interval_ms == 2000


def test_explicit_renew_is_kept() -> None:
    s = resolve(file={"renew_interval_ms": 1000}, flags={"lease_ttl_ms": 30000})
    assert s.renew_interval_ms == 1000


def test_settings_are_frozen() -> None:
    s = resolve()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.lease_ttl_ms = 1  # type: ignore[misc]


# --- invariants -----------------------------------------------------------------

BROKEN = [
    ({"lease_ttl_ms": 999}, "lease_ttl_ms", "between 1000 and 86400000"),
    ({"renew_interval_ms": 0}, "renew_interval_ms", "> 0"),
    ({"renew_interval_ms": 7500}, "renew_interval_ms", "lease_ttl_ms / 2 (7500), got 7500"),
    ({"clock_rate_error": 0.1}, "clock_rate_error", "less than 0.1"),
    ({"clock_rate_error": -0.001}, "clock_rate_error", ">= 0"),
    ({"live_tail_flush_ms": 0}, "live_tail_flush_ms", "> 0"),
    ({"live_tail_flush_ms": 5000}, "live_tail_flush_ms", "lease_ttl_ms / 3 (5000), got 5000"),
    ({"handoff_ack_timeout_ms": 0}, "handoff_ack_timeout_ms", "> 0"),
    ({"handoff_ack_timeout_ms": 15000}, "handoff_ack_timeout_ms", "lease_ttl_ms (15000)"),
    ({"ledger_retention_days": 0}, "ledger_retention_days", "at least 1"),
    ({"ledger_retention_entries": 999}, "ledger_retention_entries", "at least 1000"),
    ({"ping_interval_ms": 49}, "ping_interval_ms", ">= 50"),
    ({"ping_interval_ms": 60000}, "ping_interval_ms", "less than 60000"),
    ({"max_frame_bytes": 1023}, "max_frame_bytes", "between 1024"),
    ({"max_frame_bytes": 64 * 1024 * 1024 + 1}, "max_frame_bytes", "64 MiB"),
    ({"log_level": "verbose"}, "log_level", "debug, info, warning, error"),
    ({"lease_store": "/srv/remote.git"}, "lease_store", "URL"),
    ({"lease_store": "git+file://"}, "lease_store", "URL"),
    ({"channel": "http://127.0.0.1:8480"}, "channel", "local:http://host:port"),
    ({"channel": "local:127.0.0.1:8480"}, "channel", "telegram"),
    ({"agent": "bash"}, "agent", "cmd:PROGRAM"),
    ({"agent": "python:mod"}, "agent", "python:module:function"),
    ({"agent_timeout_ms": 99}, "agent_timeout_ms", "100..3600000"),
    ({"agent_retries": 11}, "agent_retries", "0..10"),
    ({"agent_workers": 0}, "agent_workers", "1..32"),
    ({"ambiguous_policy": "maybe"}, "ambiguous_policy", "resend, skip"),
    ({"transcript_archive": "yes"}, "transcript_archive", "on or off"),
]


@pytest.mark.parametrize(
    "values",
    [
        {"channel": "local:http://127.0.0.1:8480"},
        {"channel": "telegram"},
        {"channel": "telegram:https://api.example.org"},
        {"agent": "cmd:/usr/bin/my-agent --fast"},
        {"agent": "python:my_pkg.agent:handle"},
        {"ambiguous_policy": "skip"},
        {"transcript_archive": "off"},
    ],
)
def test_channel_agent_and_policy_values_that_are_accepted(values: dict[str, object]) -> None:
    s = resolve(file=values)
    assert {k: getattr(s, k) for k in values} == values


@pytest.mark.parametrize(("values", "knob", "rule"), BROKEN)
def test_broken_invariant_names_the_knob(values: dict[str, object], knob: str, rule: str) -> None:
    err = refused(file=values)
    assert err.knob == knob
    assert rule in str(err)
    assert str(err).startswith(f"{knob}: ")


def test_renew_message_states_the_rule() -> None:
    err = refused(flags={"renew_interval_ms": 8000})
    assert str(err) == "renew_interval_ms: must be less than lease_ttl_ms / 2 (7500), got 8000"


def test_a_small_ttl_moves_the_defaults_that_depend_on_it() -> None:
    s = resolve(env={"BATON_LEASE_TTL_MS": "3000"})
    assert (s.renew_interval_ms, s.live_tail_flush_ms, s.handoff_ack_timeout_ms) == (
        1000,
        750,
        1500,
    )
    assert resolve(flags={"lease_ttl_ms": 1000}).live_tail_flush_ms == 250


def test_a_knob_set_by_hand_that_breaks_with_the_ttl_is_refused() -> None:
    err = refused(flags={"lease_ttl_ms": 4000, "handoff_ack_timeout_ms": 5000})
    assert err.knob == "handoff_ack_timeout_ms"
    err = refused(file={"live_tail_flush_ms": 1000}, flags={"lease_ttl_ms": 2000})
    assert err.knob == "live_tail_flush_ms"
    assert "(666.67)" in str(err)


def test_boundaries_just_inside_are_accepted() -> None:
    s = resolve(
        flags={
            "lease_ttl_ms": 1000,
            "renew_interval_ms": 499,
            "clock_rate_error": 0.0999,
            "live_tail_flush_ms": 333,
            "handoff_ack_timeout_ms": 999,
            "ledger_retention_days": 1,
            "ledger_retention_entries": 1000,
            "ping_interval_ms": 50,
            "max_frame_bytes": 64 * 1024 * 1024,
        }
    )
    assert s.lease_ttl_ms == 1000
    assert resolve(flags={"ping_interval_ms": 59999, "max_frame_bytes": 1024}).ping_interval_ms


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(Settings(), lease_ttl_ms=500)
    assert info.value.knob == "lease_ttl_ms"


# --- unknown names and bad types --------------------------------------------------


def test_unknown_file_key_names_key_and_file() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_settings({"lease_tll_ms": 1}, {}, {}, source_name="/h/config.toml")
    assert info.value.knob == "lease_tll_ms"
    assert "/h/config.toml" in str(info.value)


def test_unknown_env_var_refused() -> None:
    err = refused(env={"BATON_LEASE_TTL": "20000"})
    assert err.knob == "BATON_LEASE_TTL"


@pytest.mark.parametrize("name", sorted(RESERVED_ENV))
def test_reserved_env_vars_ignored(name: str) -> None:
    assert resolve(env={name: "anything", "PATH": "/bin", "baton_x": "1"}) == Settings()


def test_reserved_env_contains_home_and_telegram() -> None:
    assert {"BATON_HOME", "BATON_TELEGRAM_TOKEN"} <= RESERVED_ENV


def test_unknown_flag_refused() -> None:
    assert refused(flags={"nope": 1}).knob == "nope"


def test_env_name_shape() -> None:
    assert env_name("lease_ttl_ms") == "BATON_LEASE_TTL_MS"


def test_bad_int_from_env_names_knob_and_source() -> None:
    err = refused(env={"BATON_LEASE_TTL_MS": "abc"})
    assert err.knob == "lease_ttl_ms"
    assert "expected an integer, got 'abc'" in str(err)
    assert "BATON_LEASE_TTL_MS" in str(err)


@pytest.mark.parametrize("raw", [True, "15000", 15000.0, [15000], {"a": 1}])
def test_bad_int_from_file(raw: object) -> None:
    err = refused(file={"lease_ttl_ms": raw})
    assert err.knob == "lease_ttl_ms"
    assert "expected an integer" in str(err)
    assert "config.toml" in str(err)


@pytest.mark.parametrize("raw", ["0.5x", "nan", "inf", ""])
def test_bad_float_from_env(raw: str) -> None:
    err = refused(env={"BATON_CLOCK_RATE_ERROR": raw})
    assert err.knob == "clock_rate_error"
    assert "finite number" in str(err)


def test_bool_is_not_a_float_in_file() -> None:
    assert refused(file={"clock_rate_error": False}).knob == "clock_rate_error"


def test_bad_types_for_string_knobs() -> None:
    assert refused(file={"channel": 3}).knob == "channel"
    err = refused(file={"http": 8420})
    assert (err.knob, "config.toml" in str(err)) == ("http", True)


def test_bad_host_port_from_flag_names_flag() -> None:
    err = refused(flags={"wire": "localhost"})
    assert err.knob == "wire"
    assert "--wire" in str(err)


# --- HostPort ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:8420", "127.0.0.1", 8420),
        ("localhost:0", "localhost", 0),
        ("my-box.lan:65535", "my-box.lan", 65535),
        ("[::1]:8421", "::1", 8421),
        ("[fe80::1%eth0]:1", "fe80::1%eth0", 1),
    ],
)
def test_host_port_parses_and_round_trips(text: str, host: str, port: int) -> None:
    hp = HostPort.parse(text, "http")
    assert (hp.host, hp.port) == (host, port)
    assert str(hp) == text
    assert HostPort.parse(str(hp), "http") == hp


def test_host_port_endpoints() -> None:
    assert HostPort.parse("[::1]:5", "wire").zmq_endpoint == "tcp://[::1]:5"
    assert HostPort.parse("10.1.2.3:80", "http").url == "http://10.1.2.3:80"
    assert HostPort("::1", 9).url == "http://[::1]:9"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "8420",
        "localhost",
        ":8420",
        "host:",
        "host:65536",
        "host:-1",
        "host:80a",
        "host: 80",
        "::1:8420",
        "[::1]8420",
        "[::1]:",
        "[not-v6]:80",
        "[]:80",
        "bad host:80",
        "-host:80",
        "host:१२",
    ],
)
def test_host_port_refuses_bad_input(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        HostPort.parse(text, "wire")
    assert info.value.knob == "wire"


# --- a property -----------------------------------------------------------------------


@given(
    ttl=st.integers(min_value=-(10**6), max_value=10**7),
    renew=st.one_of(st.none(), st.integers(min_value=-10, max_value=10**7)),
    flush=st.integers(min_value=-10, max_value=10**6),
    handoff=st.integers(min_value=-10, max_value=10**7),
)
def test_every_resolve_is_valid_or_names_a_known_knob(
    ttl: int, renew: int | None, flush: int, handoff: int
) -> None:
    flags: dict[str, object | None] = {
        "lease_ttl_ms": ttl,
        "renew_interval_ms": renew,
        "live_tail_flush_ms": flush,
        "handoff_ack_timeout_ms": handoff,
    }
    try:
        s = resolve(flags=flags)
    except ConfigError as err:
        assert err.knob in flags
        return
    assert s.lease_ttl_ms >= 1000
    assert 0 < s.renew_interval_ms * 2 < s.lease_ttl_ms
    assert 0 < s.live_tail_flush_ms * 3 < s.lease_ttl_ms
    assert 0 < s.handoff_ack_timeout_ms < s.lease_ttl_ms
    if renew is None:
        assert s.renew_interval_ms == ttl // 3


@given(ttl=st.integers(min_value=1000, max_value=86_400_000))
def test_any_ttl_is_valid_with_the_defaults_that_follow_it(ttl: int) -> None:
    s = resolve(env={"BATON_LEASE_TTL_MS": str(ttl)})
    assert s.renew_interval_ms == ttl // 3
    assert s.renew_interval_ms * 2 < ttl


# --- config.toml on disk --------------------------------------------------------------


def test_missing_config_is_empty(tmp_path: Path) -> None:
    assert read_config(tmp_path / "config.toml") == {}


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('log_level = "info"\nlease_ttl_ms = = 3\n')
    with pytest.raises(ConfigError) as info:
        read_config(path)
    assert info.value.knob == "config.toml"
    assert str(path) in str(info.value)
    assert "line 2" in str(info.value)


def test_non_utf8_config_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'channel = "\xff"\n')
    with pytest.raises(ConfigError):
        read_config(path)


def test_write_read_round_trip_and_private(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    values = {
        "http": "[::1]:8420",
        "lease_ttl_ms": 20000,
        "clock_rate_error": 1e-05,
        "channel": 'quote " back \\ nl \n tab \t del \x7f bell \x07 é 🎉',
    }
    write_config(path, values)
    assert read_config(path) == values
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("#")


def test_write_config_replaces_existing(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    write_config(path, {"lease_ttl_ms": 20000})
    write_config(path, {"channel": "x"})
    assert read_config(path) == {"channel": "x"}


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}])
def test_write_config_refuses_other_types(tmp_path: Path, value: object) -> None:
    with pytest.raises(TypeError):
        write_config(tmp_path / "config.toml", {"channel": value})
    assert not (tmp_path / "config.toml").exists()


def test_write_config_refuses_non_bare_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_config(tmp_path / "config.toml", {"a b": 1})


@given(text=st.text(alphabet=st.characters(blacklist_categories=["Cs"])))
def test_any_string_round_trips(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    write_config(path, {"channel": text})
    assert read_config(path) == {"channel": text}


def test_written_defaults_load_back(tmp_path: Path) -> None:
    write_config(tmp_path / "config.toml", Settings().to_dict())
    assert load_settings(tmp_path, {}, {}) == Settings()


def test_load_settings_layers_home_env_flags(tmp_path: Path) -> None:
    write_config(tmp_path / "config.toml", {"lease_ttl_ms": 30000, "log_level": "error"})
    s = load_settings(
        tmp_path,
        {"BATON_HOME": str(tmp_path), "BATON_LOG_LEVEL": "debug"},
        {"log_level": None, "channel": "telegram"},
    )
    assert (s.lease_ttl_ms, s.renew_interval_ms, s.log_level, s.channel) == (
        30000,
        10000,
        "debug",
        "telegram",
    )


def test_load_settings_unknown_key_names_home_file(tmp_path: Path) -> None:
    write_config(tmp_path / "config.toml", {"colour": "blue"})
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, {}, {})
    assert info.value.knob == "colour"
    assert str(tmp_path / "config.toml") in str(info.value)


def test_load_settings_without_config(tmp_path: Path) -> None:
    assert load_settings(tmp_path, {}, {}) == Settings()


def test_the_fence_probe_is_off_by_default_and_takes_only_http_urls() -> None:
    assert resolve().fence_probe_url == ""
    url = "http://127.0.0.1:9/act"
    assert resolve(env={"BATON_FENCE_PROBE_URL": url}).fence_probe_url == url
    assert refused(env={"BATON_FENCE_PROBE_URL": "file:///etc/passwd"}).knob == "fence_probe_url"


def test_a_lease_longer_than_a_record_may_carry_is_refused() -> None:
    assert refused(flags={"lease_ttl_ms": 86_400_001}).knob == "lease_ttl_ms"
    assert resolve(flags={"lease_ttl_ms": 86_400_000}).lease_ttl_ms == 86_400_000


def test_advertise_is_where_peers_dial_in_order_and_never_a_wildcard() -> None:
    assert resolve(env={"BATON_ADVERTISE": "laptop.ts.net, 100.64.0.7:9000,auto"}).advertise == (
        "laptop.ts.net",
        "100.64.0.7:9000",
        "auto",
    )
    assert resolve(file={"advertise": ["[fd7a::1]:8421", "fd7a::2"]}).advertise[1] == "fd7a::2"
    for bad in ("0.0.0.0", "[::]:8421", "host:0", "bad host", "", "a,b,c,d,e,f,g,h,i"):
        assert refused(flags={"advertise": bad}).knob == "advertise", bad
    assert refused(file={"advertise": "auto"}).knob == "advertise"  # TOML wants a list


def test_listen_moves_the_wire_and_opens_the_door_on_one_host() -> None:
    s = resolve(flags={"listen": "0.0.0.0"})
    assert (str(s.wire_bind), str(s.door), str(s.http)) == (
        "0.0.0.0:8421",
        "0.0.0.0:8422",
        "127.0.0.1:8420",  # the operator API stays on loopback
    )
    assert str(resolve(env={"BATON_LISTEN": "::", "BATON_DOOR_PORT": "9000"}).door) == "[::]:9000"
    assert resolve().door is None and str(resolve().wire_bind) == "127.0.0.1:8421"
    for bad in ("not a host", "1.2.3.4:80", "[::]"):
        assert refused(flags={"listen": bad}).knob == "listen", bad
    assert refused(flags={"door_port": "70000"}).knob == "door_port"


def test_state_remote_is_empty_off_or_a_git_url_and_the_pace_is_bounded() -> None:
    for ok in ("", "off", "git+file:///srv/mesh.git", "git+ssh://host/mesh.git"):
        assert resolve(env={"BATON_STATE_REMOTE": ok}).state_remote == ok
    for bad in ("file:///srv/mesh.git", "etcd+http://h:2379", "git+", "on"):
        assert refused(env={"BATON_STATE_REMOTE": bad}).knob == "state_remote"
    assert resolve(env={"BATON_STATE_SYNC_MS": "100"}).state_sync_ms == 100
    for bad in ("99", "600001", "x"):
        assert refused(env={"BATON_STATE_SYNC_MS": bad}).knob == "state_sync_ms"
