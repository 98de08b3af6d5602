"""The knob table and the layering: defaults < config.toml < BATON_* environment <
flags, into one Settings (baton.core.settings holds the Settings and its invariants).

Every knob is listed once, as data, in KNOBS, with the parser that turns a layer's raw
value into a typed one; an unknown key in the file or an unknown BATON_* variable
(other than RESERVED_ENV) is refused, never ignored. Pure: the layers come in as
arguments (the I/O side is baton.stores.config_file).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

from baton.core import safejson
from baton.core.errors import ConfigError
from baton.core.settings import (
    DEFAULT_LEASE_TTL_MS,
    ENV_PREFIX,
    RESERVED_ENV,
    HostPort,
    Settings,
    derived_from_ttl,
    split_host_port,
)

_INTEGER = re.compile(r"[+-]?[0-9]+")


# --- the knob table: how each layer's raw value becomes a typed value ----------
# A parser gets the raw value and whether it is text (env, string flags) rather
# than a typed TOML value; it raises ValueError whose text says what was expected.


def _as_int(raw: object, is_text: bool) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):  # TOML true is no integer
        return raw
    if is_text and isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        return int(raw.strip())
    raise ValueError(f"expected an integer, got {raw!r}")


def _as_float(raw: object, is_text: bool) -> float:
    value: float | None = None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif is_text and isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if value is None or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {raw!r}")
    return value


def _as_str(raw: object, is_text: bool) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueError(f"expected a string, got {raw!r}")


def _as_patterns(raw: object, is_text: bool) -> tuple[str, ...]:
    if is_text and isinstance(raw, str):
        try:
            raw = safejson.loads(raw)
        except ValueError:
            raise ValueError(f"expected a JSON array of strings, got {raw!r}") from None
    if isinstance(raw, list | tuple) and all(isinstance(p, str) for p in raw):
        return tuple(raw)
    raise ValueError(f"expected a list of strings, got {raw!r}")


def _as_hosts(raw: object, is_text: bool) -> tuple[str, ...]:
    """A list of strings, or in text a comma-separated list ("auto,laptop.ts.net")."""
    if is_text and isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, list | tuple) and all(isinstance(p, str) for p in raw):
        return tuple(p.strip() for p in raw)
    raise ValueError(f"expected a list of hosts, got {raw!r}")


def _as_log_level(raw: object, is_text: bool) -> str:
    return _as_str(raw, is_text).strip().lower()


def _as_host_port(raw: object, is_text: bool) -> HostPort:
    if isinstance(raw, HostPort):
        return raw
    if not isinstance(raw, str):
        raise ValueError(f'expected a string "host:port", got {raw!r}')
    try:
        return HostPort(*split_host_port(raw))
    except ValueError as err:
        raise ValueError(f"{err}, got {raw!r}") from None


Parser = Callable[[object, bool], object]

KNOBS: Mapping[str, Parser] = {
    "http": _as_host_port,
    "wire": _as_host_port,
    "listen": _as_log_level,  # trimmed and lower-cased
    "door_port": _as_int,
    "advertise": _as_hosts,
    "lease_ttl_ms": _as_int,
    "renew_interval_ms": _as_int,
    "clock_rate_error": _as_float,
    "live_tail_flush_ms": _as_int,
    "handoff_ack_timeout_ms": _as_int,
    "ledger_retention_days": _as_int,
    "ledger_retention_entries": _as_int,
    "ping_interval_ms": _as_int,
    "max_frame_bytes": _as_int,
    "log_level": _as_log_level,
    "lease_store": _as_str,
    "channel": _as_str,
    "fence_probe_url": _as_str,
    "state_remote": _as_str,
    "state_sync_ms": _as_int,
    "transcript_archive": _as_log_level,  # trimmed and lower-cased
    "agent": _as_str,
    "agent_timeout_ms": _as_int,
    "agent_retries": _as_int,
    "agent_workers": _as_int,
    "agent_env": _as_patterns,
    "agent_secrets": _as_patterns,
    "agent_sandbox": _as_log_level,  # trimmed and lower-cased
    "ambiguous_policy": _as_log_level,  # trimmed and lower-cased like a log level
    "redact_patterns": _as_patterns,
    "fault_file": _as_str,
}


def env_name(knob: str) -> str:
    """The environment variable for ``knob``: ``BATON_<KNOB UPPER>``."""
    return ENV_PREFIX + knob.upper()


def flag_name(knob: str) -> str:
    """The command-line flag for ``knob``, as named in error messages."""
    return "--" + knob.replace("_", "-")


def _parse(knob: str, raw: object, is_text: bool, origin: str) -> object:
    try:
        return KNOBS[knob](raw, is_text)
    except ValueError as err:
        raise ConfigError(knob, f"{err} (from {origin})") from None


def resolve_settings(
    file_values: Mapping[str, object],
    env: Mapping[str, str],
    flags: Mapping[str, object | None],
    source_name: str = "config.toml",
) -> Settings:
    """Layer defaults < file < env < flags into one validated Settings.

    ``file_values`` is the parsed config file (named ``source_name`` in errors);
    ``env`` the whole process environment (only BATON_* names are looked at);
    ``flags`` knob name -> value, None meaning "not given". Raises ConfigError
    naming the knob (and where its value came from) for an unknown key, a value
    of the wrong type, or a broken invariant.
    """
    chosen: dict[str, object] = {}
    for key, raw in file_values.items():
        if key not in KNOBS:
            raise ConfigError(key, f"unknown key in {source_name}")
        chosen[key] = _parse(key, raw, False, source_name)
    by_env_name = {env_name(k): k for k in KNOBS}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        knob = by_env_name.get(name)
        if knob is None:
            raise ConfigError(name, "unknown environment variable (not a baton setting)")
        chosen[knob] = _parse(knob, text, True, name)
    for knob, raw in flags.items():
        if knob not in KNOBS:
            raise ConfigError(knob, "unknown flag (not a baton setting)")
        if raw is not None:
            chosen[knob] = _parse(knob, raw, isinstance(raw, str), flag_name(knob))
    ttl = cast(int, chosen.get("lease_ttl_ms", DEFAULT_LEASE_TTL_MS))
    for knob, value in derived_from_ttl(ttl).items():
        chosen.setdefault(knob, value)
    return Settings(**cast(dict[str, Any], chosen))
