"""The settings object: defaults < config.toml < BATON_* environment < flags.

Pure: this module reads no file and no environment of its own; callers pass the
layers in (the I/O side is baton.stores.config_file). The result is one frozen
Settings, built once at start and passed down.

Invariants (docs/DESIGN.md, "Settings"), checked whenever a Settings is built:
- 1000 <= lease_ttl_ms <= 86400000 (a lease record cannot say more than a day).
- 0 < renew_interval_ms < lease_ttl_ms / 2.
- 0 <= clock_rate_error < 0.1.
- 0 < live_tail_flush_ms < lease_ttl_ms / 3.
- 0 < handoff_ack_timeout_ms < lease_ttl_ms.
- When no layer sets them, renew_interval_ms, live_tail_flush_ms and
  handoff_ack_timeout_ms follow the *final* ttl (derived_from_ttl): setting only the
  ttl moves them too.
- ledger_retention_days >= 1; ledger_retention_entries >= 1000.
- 50 <= ping_interval_ms < 60000; 1024 <= max_frame_bytes <= 64 MiB.
- log_level is one of debug, info, warning, error.
- lease_store is empty (none configured) or looks like "scheme://...".
- fence_probe_url is empty (off) or an http:// URL.
- state_remote is empty (the lease store's remote when it is a git one, else off), off,
  or a git+URL: where the agent's state directory is synchronized (StateSync);
  100 <= state_sync_ms <= 600000, how often a standby pulls and a holder commits;
  transcript_archive is on or off: whether the holder writes the transcripts into the
  state directory (baton.core.transcript_archive) when the state syncs.
- channel is empty (no channel: this machine answers nothing), local:http://host:port
  (the bundled chat service), telegram, or telegram:<base URL> (a Bot API at that URL).
- agent is echo, cmd:PROGRAM [ARGS] or python:module:function (whether it loads is
  checked when the node starts its runner); 100 <= agent_timeout_ms <= 3600000;
  0 <= agent_retries <= 10; 1 <= agent_workers <= 32; agent_env lists names of
  environment variables an agent gets (none BATON_*; a JSON array in the environment);
  agent_secrets lists names of secrets (baton secrets) an agent gets in its environment;
  agent_sandbox is none or bwrap (baton.agents.isolation).
- ambiguous_policy is resend or skip: what a new holder does with a reply that was
  prepared but never confirmed, at a sink that cannot say whether it arrived.
- redact_patterns is a list of regular expressions that compile; the entry "default"
  stands for the built-in list (baton.core.live_tail.DEFAULT_REDACTIONS). In the
  environment it is a JSON array of strings.
- fault_file is empty (off, always in production) or a path: the transport's fault
  hooks obey it (baton.wire.fault_hooks; tests and the chaos campaign only).
- http and wire ports are in 0..65535 (0 means "pick a free port").
- listen is empty (this machine is reached on loopback only, or where wire binds) or
  the host the peer-facing ports bind: the wire (on wire's port) and the door (on
  door_port: pairing, leaving and health, never the operator API, which stays on
  http). 0.0.0.0 or :: is every interface: the one flag two real machines need.
- advertise lists where peers reach this machine's wire, in the order to dial them:
  "auto" (the default: its interface addresses when wire binds 0.0.0.0 or ::, else the
  address it binds), host names, addresses, host:port (baton.core.endpoints); in the
  environment and as a flag, comma-separated.
A broken invariant raises ConfigError whose ``knob`` is the knob at fault. How each
layer's raw value becomes a typed one, and the layering itself, is baton.core.knobs.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields

from baton.core.endpoints import AUTO, MAX_ENDPOINTS, parse_entry
from baton.core.errors import ConfigError
from baton.core.live_tail import DEFAULT_REDACTIONS
from baton.core.secret_rules import NAME as SECRET_NAME

ENV_PREFIX = "BATON_"
# BATON_* variables that are not knobs: read elsewhere, so not refused here.
RESERVED_ENV = frozenset(
    {"BATON_HOME", "BATON_TELEGRAM_TOKEN", "BATON_CHAT_USER_TOKEN", "BATON_LOG_STDERR"}
)

DEFAULT_LEASE_TTL_MS = 15000
MAX_TTL_MS = 24 * 3600 * 1000  # the longest lease a record may carry
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_FRAME_LIMIT = 64 * 1024 * 1024

_PORT = re.compile(r"[0-9]{1,5}")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_URL_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_HTTP_URL = re.compile(r"http://[^\s/]+(/\S*)?")
_CHANNEL = re.compile(r"local:http://[^\s/]+/?|telegram(:https?://[^\s/]+(/\S*)?)?")
_AGENT = re.compile(r"echo|cmd:\S.*|python:[A-Za-z_][\w.]*:[A-Za-z_]\w*")
AMBIGUOUS_POLICIES = ("resend", "skip")
SANDBOXES = ("none", "bwrap")  # baton.agents.isolation
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def split_host_port(text: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port"; raise ValueError with a reason."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError("expected [ipv6]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError("expected host:port")
        if ":" in host:
            raise ValueError("an IPv6 host must be in brackets, e.g. [::1]:8420")
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{host!r} is not a host name or address")
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise ValueError(f"port must be a number in 0..65535, got {port!r}")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class HostPort:
    """A listening address; ``port`` 0 means "pick a free port"."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, knob: str) -> HostPort:
        """Parse "host:port" or "[::1]:port"; raise ConfigError naming ``knob``."""
        try:
            host, port = split_host_port(text)
        except ValueError as err:
            raise ConfigError(knob, f"{err}, got {text!r}") from None
        return cls(host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def zmq_endpoint(self) -> str:
        """``tcp://host:port`` (an IPv6 host keeps its brackets)."""
        return f"tcp://{self}"

    @property
    def url(self) -> str:
        """``http://host:port`` (an IPv6 host keeps its brackets)."""
        return f"http://{self}"


def derived_from_ttl(ttl: int) -> dict[str, int]:
    """The defaults that follow the lease ttl when no layer sets them, so that setting
    only the ttl (BATON_LEASE_TTL_MS=3000) keeps every invariant."""
    return {
        "renew_interval_ms": ttl // 3,
        "live_tail_flush_ms": min(1000, ttl // 4),
        "handoff_ack_timeout_ms": min(5000, ttl // 2),
    }


def _is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return _HOSTNAME.fullmatch(text) is not None
    return True


def _fmt(x: float) -> str:
    """A limit for a message: 7500 rather than 7500.0, 333.33 rather than 333.333..."""
    return str(int(x)) if x == int(x) else f"{x:.2f}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of a node, validated on construction (see the module comment).

    Build it with baton.core.knobs.resolve_settings (or baton.stores.config_file.load_settings):
    only they derive renew_interval_ms from the final lease_ttl_ms.
    """

    http: HostPort = HostPort("127.0.0.1", 8420)
    wire: HostPort = HostPort("127.0.0.1", 8421)
    listen: str = ""
    door_port: int = 8422
    advertise: tuple[str, ...] = (AUTO,)
    lease_ttl_ms: int = DEFAULT_LEASE_TTL_MS
    renew_interval_ms: int = DEFAULT_LEASE_TTL_MS // 3
    clock_rate_error: float = 0.01
    live_tail_flush_ms: int = 1000
    handoff_ack_timeout_ms: int = 5000
    ledger_retention_days: int = 7
    ledger_retention_entries: int = 100000
    ping_interval_ms: int = 1000
    max_frame_bytes: int = 1048576
    log_level: str = "info"
    lease_store: str = ""
    channel: str = ""
    fence_probe_url: str = ""
    state_remote: str = ""
    state_sync_ms: int = 2000
    transcript_archive: str = "on"
    agent: str = "echo"
    agent_timeout_ms: int = 30000
    agent_retries: int = 2
    agent_workers: int = 2
    agent_env: tuple[str, ...] = ()  # names of variables an agent gets from the node's
    agent_secrets: tuple[str, ...] = ()  # names of secrets (SecretStore) it gets, as env
    agent_sandbox: str = "none"
    ambiguous_policy: str = "resend"
    redact_patterns: tuple[str, ...] = ("default",)
    fault_file: str = ""

    @property
    def wire_bind(self) -> HostPort:
        """Where the wire listens: wire's port on listen's host when listen is set."""
        return HostPort(self.listen, self.wire.port) if self.listen else self.wire

    @property
    def door(self) -> HostPort | None:
        """Where the door (pairing, leaving, health) listens, when listen is set."""
        return HostPort(self.listen, self.door_port) if self.listen else None

    @property
    def redactions(self) -> tuple[str, ...]:
        """redact_patterns with "default" expanded to the built-in list."""
        out: list[str] = []
        for pattern in self.redact_patterns:
            out += DEFAULT_REDACTIONS if pattern == "default" else [pattern]
        return tuple(out)

    def __post_init__(self) -> None:
        broken = _first_broken_invariant(self)
        if broken is not None:
            raise ConfigError(*broken)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able values, knob name -> value (addresses as "host:port")."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, HostPort):
                value = str(value)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def _first_broken_invariant(s: Settings) -> tuple[str, str] | None:
    """(knob, rule) of the first invariant ``s`` breaks, or None."""
    ttl = s.lease_ttl_ms
    flush, frame, store = s.live_tail_flush_ms, s.max_frame_bytes, s.lease_store
    checks: list[tuple[str, bool, str]] = [
        ("lease_ttl_ms", 1000 <= ttl <= MAX_TTL_MS, "must be between 1000 and 86400000 (1 day)"),
        ("renew_interval_ms", s.renew_interval_ms > 0, "must be > 0"),
        (
            "renew_interval_ms",
            s.renew_interval_ms * 2 < ttl,
            f"must be less than lease_ttl_ms / 2 ({_fmt(ttl / 2)})",
        ),
        ("clock_rate_error", 0 <= s.clock_rate_error < 0.1, "must be >= 0 and less than 0.1"),
        (
            "live_tail_flush_ms",
            flush > 0 and flush * 3 < ttl,
            f"must be > 0 and less than lease_ttl_ms / 3 ({_fmt(ttl / 3)})",
        ),
        (
            "handoff_ack_timeout_ms",
            0 < s.handoff_ack_timeout_ms < ttl,
            f"must be > 0 and less than lease_ttl_ms ({ttl})",
        ),
        ("ledger_retention_days", s.ledger_retention_days >= 1, "must be at least 1"),
        ("ledger_retention_entries", s.ledger_retention_entries >= 1000, "must be at least 1000"),
        ("ping_interval_ms", 50 <= s.ping_interval_ms < 60000, "must be >= 50 and less than 60000"),
        ("max_frame_bytes", 1024 <= frame <= MAX_FRAME_LIMIT, "must be between 1024 and 64 MiB"),
        ("log_level", s.log_level in LOG_LEVELS, f"must be one of {', '.join(LOG_LEVELS)}"),
        (
            "lease_store",
            store == "" or _URL_SHAPE.fullmatch(store) is not None,
            "must be empty or a URL like git+file:///path/remote.git",
        ),
        (
            "fence_probe_url",
            s.fence_probe_url == "" or _HTTP_URL.fullmatch(s.fence_probe_url) is not None,
            "must be empty or an http:// URL",
        ),
        (
            "state_remote",
            s.state_remote in ("", "off")
            or (
                s.state_remote.startswith("git+")
                and _URL_SHAPE.fullmatch(s.state_remote) is not None
            ),
            "must be empty, off or a git+URL like git+file:///path/remote.git",
        ),
        ("state_sync_ms", 100 <= s.state_sync_ms <= 600000, "must be 100..600000"),
        (
            "channel",
            s.channel == "" or _CHANNEL.fullmatch(s.channel) is not None,
            "must be empty, local:http://host:port, telegram or telegram:https://host",
        ),
        (
            "agent",
            _AGENT.fullmatch(s.agent) is not None,
            "must be echo, cmd:PROGRAM [ARGS] or python:module:function",
        ),
        ("agent_timeout_ms", 100 <= s.agent_timeout_ms <= 3600000, "must be 100..3600000"),
        ("agent_retries", 0 <= s.agent_retries <= 10, "must be 0..10"),
        ("agent_workers", 1 <= s.agent_workers <= 32, "must be 1..32"),
        (
            "agent_env",
            all(_ENV_NAME.fullmatch(n) and not n.startswith(ENV_PREFIX) for n in s.agent_env),
            "must be names of environment variables, none of them BATON_*",
        ),
        (
            "agent_secrets",
            all(SECRET_NAME.fullmatch(n) and not n.startswith(ENV_PREFIX) for n in s.agent_secrets),
            "must be names of secrets (A-Z, 0-9, _; none of them BATON_*)",
        ),
        ("transcript_archive", s.transcript_archive in ("on", "off"), "must be on or off"),
        ("agent_sandbox", s.agent_sandbox in SANDBOXES, f"must be one of {', '.join(SANDBOXES)}"),
        (
            "ambiguous_policy",
            s.ambiguous_policy in AMBIGUOUS_POLICIES,
            f"must be one of {', '.join(AMBIGUOUS_POLICIES)}",
        ),
    ]
    for knob, ok, rule in checks:
        if not ok:
            return knob, f"{rule}, got {getattr(s, knob)!r}"
    if s.listen and (not _is_host(s.listen) or "%" in s.listen):
        return "listen", f"must be empty or a host (0.0.0.0, ::, an address), got {s.listen!r}"
    if not 0 <= s.door_port <= 65535:
        return "door_port", f"must be a port in 0..65535, got {s.door_port!r}"
    if not 0 < len(s.advertise) <= MAX_ENDPOINTS:
        return "advertise", f"must list 1 to {MAX_ENDPOINTS} entries, got {list(s.advertise)!r}"
    for entry in s.advertise:
        if entry != AUTO:
            try:
                parse_entry(entry)
            except ValueError as err:
                return "advertise", f"{entry!r}: {err}"
    for pattern in s.redact_patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            return "redact_patterns", f"{pattern!r} is not a regular expression: {err}"
    return None
