"""Where a machine listens and where it says it can be reached (issue 17). No I/O.

Binding and advertising are two things. A machine binds where it is told (``0.0.0.0`` or
``::`` for every interface) and advertises, in the order a peer should dial them, the
endpoints a peer can reach: the operator's ``advertise`` entries (a host, a DNS name or
``host:port``), where ``auto`` (the default) stands for this machine's interface
addresses when it binds every interface, or else for the address it binds. A wildcard is
never advertised: a peer would dial itself.

A machine that binds every interface also advertises, after those, the addresses its
peers see its connections come from (``with_observed``): behind a NAT with the port
forwarded, that is the one a peer can dial.

The interface addresses come from an adapter (baton.adapters.netif) through ``rank_addresses``:
LAN addresses first, then the rest of IPv4 (a tailnet's 100.64.0.0/10 among them), then
IPv6; loopback, link-local, multicast and container or VM bridges are left out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from baton.core.errors import InvalidCard

WIRE_RE = re.compile(r"^tcp://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
HTTP_RE = re.compile(r"^http://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
AUTO = "auto"
MAX_ENDPOINTS = 8
WILDCARDS = frozenset({"0.0.0.0", "::", "*"})
LOOPBACK = {False: "127.0.0.1", True: "::1"}
#: interfaces whose addresses no peer on another host can use
BRIDGE_PREFIXES = ("docker", "br-", "veth", "virbr", "cni", "podman", "lxc")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


def check_endpoint(value: object, name: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str):
        raise InvalidCard(f"{name}: expected a string, got {type(value).__name__}")
    match = pattern.match(value)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise InvalidCard(f"{name}: expected {pattern.pattern}, got {value!r}")
    return value


def host_port(endpoint: str) -> tuple[str, int]:
    """(host without brackets, port) of ``tcp://host:port`` or ``http://host:port``."""
    rest = endpoint.split("://", 1)[1]
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


def with_host(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def parse_entry(entry: str) -> tuple[str, int | None]:
    """An ``advertise`` entry: ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare
    IPv6 address; ValueError saying what is wrong."""
    text = entry.strip()
    port: str | None = None
    if text.startswith("["):
        host, _, tail = text[1:].partition("]")
        if tail:
            if not tail.startswith(":"):
                raise ValueError(f"expected [ipv6]:port, got {entry!r}")
            port = tail[1:]
        ipaddress.IPv6Address(host)  # ValueError names it
    elif text.count(":") > 1:
        host = str(ipaddress.IPv6Address(text))
    else:
        host, _, port_text = text.partition(":")
        port = port_text or None
        if not _HOST.fullmatch(host):
            raise ValueError(f"{host!r} is not a host name or address")
    if host in WILDCARDS:
        raise ValueError(f"{host} is a wildcard: a peer cannot dial it")
    if "%" in host:
        raise ValueError(f"{host} is scoped to one link (%): a peer cannot dial it")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None  # a name
    if literal is not None and (literal.is_link_local or literal.is_multicast):
        raise ValueError(f"{host} is link-local or multicast: a peer cannot dial it")
    if port is None:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"port must be in 1..65535, got {port!r}")
    return host, int(port)


def rank_addresses(found: Iterable[tuple[str, str]]) -> list[str]:
    """The addresses worth advertising among ``found`` (interface name, address), best
    first, each once (see the module comment)."""
    ranked: list[tuple[int, int, str]] = []
    for n, (interface, text) in enumerate(found):
        if interface.startswith(BRIDGE_PREFIXES):
            continue
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue  # a MAC address or something else that is no IP
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        if (
            address.is_loopback
            or address.is_link_local
            or address.is_multicast
            or address.is_unspecified
            or address.is_reserved
        ):
            continue
        if address.version == 4:
            rank = 0 if address.is_private else 1
        else:
            rank = 2 if address.is_private else 3
        ranked.append((rank, n, str(address)))
    seen: dict[str, None] = {}
    for _, _, address_text in sorted(ranked):
        seen.setdefault(address_text)
    return list(seen)


def advertised(bind: str, advertise: Sequence[str], interfaces: Sequence[str]) -> tuple[str, ...]:
    """The wire endpoints to announce, in dialing order (at most MAX_ENDPOINTS).

    ``bind`` is the bound ``tcp://host:port`` (port resolved); ``advertise`` the
    operator's entries (empty means ``auto``); ``interfaces`` this machine's addresses
    as ``rank_addresses`` gives them. Raises ValueError for a bad entry."""
    bound, port = host_port(bind)
    wildcard = bound in WILDCARDS
    hosts: list[tuple[str, int]] = []
    for entry in advertise or (AUTO,):
        if entry.strip() == AUTO:
            if not wildcard:
                hosts.append((bound, port))
                continue
            six = bound == "::"
            usable = [a for a in interfaces if six or ":" not in a]
            hosts += [(a, port) for a in usable] or [(LOOPBACK[six], port)]
        else:
            host, entry_port = parse_entry(entry)
            hosts.append((host, entry_port or port))
    endpoints = dict.fromkeys(with_host("tcp", h, p) for h, p in hosts)
    return tuple(endpoints)[:MAX_ENDPOINTS]


def with_observed(wire: Sequence[str], hosts: Iterable[str]) -> tuple[str, ...]:
    """``wire`` and after it, on the port of its first endpoint, the addresses peers see
    this machine's connections come from (kept only if ``rank_addresses`` would keep
    them), each once, at most MAX_ENDPOINTS in all."""
    if not wire:
        return ()
    port = host_port(wire[0])[1]
    extra = (with_host("tcp", h, port) for h in rank_addresses(("seen", h) for h in hosts))
    return tuple(dict.fromkeys((*wire, *extra)))[:MAX_ENDPOINTS]


def only_loopback(endpoints: Sequence[str]) -> bool:
    """Every endpoint is a loopback address (what a wildcard bind advertises when no
    address is found: offline)."""
    for endpoint in endpoints:
        try:
            if not ipaddress.ip_address(host_port(endpoint)[0]).is_loopback:
                return False
        except ValueError:
            return False  # a name
    return True


def advertised_http(bound_url: str, wire: Sequence[str]) -> str:
    """The HTTP URL to announce: the bound one, or for a wildcard bind the first
    advertised wire host on the bound port."""
    host, port = host_port(bound_url)
    if host not in WILDCARDS:
        return bound_url
    return with_host("http", host_port(wire[0])[0] if wire else LOOPBACK[False], port)
