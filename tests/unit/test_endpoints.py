"""Where a machine binds and what it advertises (issue 17, the core): advertise entries,
ranked interface addresses, the endpoints announced for a bind. No I/O."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from baton.core.endpoints import (
    MAX_ENDPOINTS,
    WILDCARDS,
    WIRE_RE,
    advertised,
    advertised_http,
    host_port,
    only_loopback,
    parse_entry,
    rank_addresses,
    with_observed,
)

# --- parse_entry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("192.168.1.7", ("192.168.1.7", None)),
        ("laptop", ("laptop", None)),
        ("laptop.tail1234.ts.net", ("laptop.tail1234.ts.net", None)),
        ("  laptop.lan  ", ("laptop.lan", None)),  # surrounding blanks are dropped
        ("192.168.1.7:9000", ("192.168.1.7", 9000)),
        ("laptop.lan:1", ("laptop.lan", 1)),
        ("host:65535", ("host", 65535)),
        ("[fd7a::1]", ("fd7a::1", None)),
        ("[fd7a::1]:8421", ("fd7a::1", 8421)),
        ("[::1]:9", ("::1", 9)),
        ("fd7a:115c:a1e0::1", ("fd7a:115c:a1e0::1", None)),
        ("fd7a:115c:a1e0:0:0:0:0:1", ("fd7a:115c:a1e0::1", None)),  # bare v6, normalised
    ],
)
def test_parse_entry_reads_hosts_names_ports_and_ipv6(
    entry: str, expected: tuple[str, int | None]
) -> None:
    assert parse_entry(entry) == expected


@pytest.mark.parametrize(
    "entry",
    [
        "0.0.0.0",
        "0.0.0.0:8421",
        "::",
        "[::]",
        "[::]:8421",
        "*",
        "*:8421",
        "host:0",
        "host:65536",
        "host:99999",
        "host:abc",
        "host:-1",
        "[fd7a::1]:0",
        "[fd7a::1]:70000",
        "[fd7a::1]:",
        "[fd7a::1]8421",  # no colon before the port
        "[not-v6]",
        "[192.168.1.7]",  # brackets are for IPv6 only
        "fd7a::zz",
        "host:1:2",
        "a_b",
        "-leading",
        "trailing-",
        "has space",
        "",
    ],
)
def test_parse_entry_refuses_wildcards_bad_ports_and_junk(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_entry(entry)


# --- rank_addresses -------------------------------------------------------------------


def test_rank_puts_lan_v4_then_other_v4_then_ula_then_global_v6() -> None:
    found = [
        ("wlan0", "2a00:1450:4001::1"),  # global IPv6
        ("tailscale0", "fd7a:115c:a1e0::1"),  # IPv6 ULA
        ("tailscale0", "100.101.102.103"),  # 100.64.0.0/10 (CGNAT, tailnets)
        ("eth0", "192.168.1.7"),  # LAN
        ("eth1", "10.0.0.5"),  # LAN
    ]
    assert rank_addresses(found) == [
        "192.168.1.7",
        "10.0.0.5",
        "100.101.102.103",
        "fd7a:115c:a1e0::1",
        "2a00:1450:4001::1",
    ]


def test_rank_keeps_discovery_order_within_a_rank() -> None:
    found = [("eth1", "10.0.0.5"), ("eth0", "192.168.1.7"), ("eth2", "172.16.3.4")]
    assert rank_addresses(found) == ["10.0.0.5", "192.168.1.7", "172.16.3.4"]


@pytest.mark.parametrize(
    "interface, address",
    [
        ("lo", "127.0.0.1"),
        ("lo", "::1"),
        ("eth0", "169.254.10.20"),  # IPv4 link-local
        ("eth0", "fe80::1"),
        ("eth0", "fe80::1%eth0"),  # link-local with a scope id
        ("eth0", "224.0.0.251"),  # multicast
        ("eth0", "ff02::1"),
        ("eth0", "0.0.0.0"),
        ("eth0", "::"),
        ("eth0", "aa:bb:cc:dd:ee:ff"),  # a MAC address (AF_PACKET / AF_LINK)
        ("eth0", "00:11:22:33:44:55"),
        ("eth0", "not an address"),
        ("docker0", "172.17.0.1"),
        ("br-3f2a9c", "172.18.0.1"),
        ("veth12ab", "10.200.0.1"),
        ("virbr0", "192.168.122.1"),
        ("cni0", "10.244.0.1"),
        ("podman0", "10.88.0.1"),
        ("lxcbr0", "10.0.3.1"),
    ],
)
def test_rank_leaves_out_what_no_other_host_can_dial(interface: str, address: str) -> None:
    assert rank_addresses([(interface, address), ("eth9", "192.168.9.9")]) == ["192.168.9.9"]


def test_rank_names_each_address_once() -> None:
    found = [
        ("eth0", "192.168.1.7"),
        ("eth0:1", "192.168.1.7"),
        ("wlan0", "fd7a::1"),
        ("wlan1", "fd7a:0:0::1"),  # the same address, spelt otherwise
    ]
    assert rank_addresses(found) == ["192.168.1.7", "fd7a::1"]


def test_rank_of_nothing_is_nothing() -> None:
    assert rank_addresses([]) == []
    assert rank_addresses([("lo", "127.0.0.1"), ("docker0", "172.17.0.1")]) == []


# --- advertised -----------------------------------------------------------------------

IFACES = ["192.168.1.7", "100.101.102.103", "fd7a::1", "2a00:1450:4001::1"]


def test_a_v4_wildcard_advertises_the_v4_interface_addresses_only() -> None:
    assert advertised("tcp://0.0.0.0:8421", [], IFACES) == (
        "tcp://192.168.1.7:8421",
        "tcp://100.101.102.103:8421",
    )
    assert advertised("tcp://*:8421", ["auto"], IFACES) == (
        "tcp://192.168.1.7:8421",
        "tcp://100.101.102.103:8421",
    )


def test_a_v6_wildcard_advertises_v4_and_bracketed_v6() -> None:
    assert advertised("tcp://[::]:8421", ["auto"], IFACES) == (
        "tcp://192.168.1.7:8421",
        "tcp://100.101.102.103:8421",
        "tcp://[fd7a::1]:8421",
        "tcp://[2a00:1450:4001::1]:8421",
    )


@pytest.mark.parametrize(
    "bind, interfaces, expected",
    [
        ("tcp://0.0.0.0:8421", [], "tcp://127.0.0.1:8421"),
        ("tcp://0.0.0.0:8421", ["fd7a::1"], "tcp://127.0.0.1:8421"),  # no v4 interface
        ("tcp://[::]:8421", [], "tcp://[::1]:8421"),
    ],
)
def test_a_wildcard_with_no_usable_interface_advertises_loopback(
    bind: str, interfaces: list[str], expected: str
) -> None:
    assert advertised(bind, [], interfaces) == (expected,)


@pytest.mark.parametrize(
    "bind", ["tcp://192.168.1.7:9000", "tcp://127.0.0.1:9000", "tcp://[fd7a::1]:9000"]
)
def test_a_specific_bind_advertises_itself_whatever_the_interfaces(bind: str) -> None:
    assert advertised(bind, [], IFACES) == (bind,)
    assert advertised(bind, ["auto"], []) == (bind,)


def test_explicit_entries_keep_their_order_and_auto_stands_in_place() -> None:
    got = advertised(
        "tcp://0.0.0.0:8421",
        ["laptop.tail1234.ts.net", "auto", "10.9.9.9:9999", "[fd7a::9]"],
        ["192.168.1.7", "192.168.2.8"],
    )
    assert got == (
        "tcp://laptop.tail1234.ts.net:8421",
        "tcp://192.168.1.7:8421",
        "tcp://192.168.2.8:8421",
        "tcp://10.9.9.9:9999",
        "tcp://[fd7a::9]:8421",
    )


def test_explicit_entries_replace_auto_when_it_is_not_listed() -> None:
    assert advertised("tcp://0.0.0.0:8421", ["vpn.example.org"], IFACES) == (
        "tcp://vpn.example.org:8421",
    )


def test_the_port_defaults_to_the_bound_one() -> None:
    assert advertised("tcp://127.0.0.1:40123", ["laptop.lan", "[::1]"], []) == (
        "tcp://laptop.lan:40123",
        "tcp://[::1]:40123",
    )


def test_at_most_max_endpoints_are_advertised() -> None:
    many = [f"10.0.{i}.1" for i in range(MAX_ENDPOINTS + 4)]
    got = advertised("tcp://0.0.0.0:8421", ["first.example", "auto"], many)
    assert len(got) == MAX_ENDPOINTS
    assert got[0] == "tcp://first.example:8421"
    assert got[1:] == tuple(f"tcp://{a}:8421" for a in many[: MAX_ENDPOINTS - 1])


def test_an_endpoint_is_advertised_once_in_its_first_place() -> None:
    got = advertised(
        "tcp://0.0.0.0:8421",
        ["192.168.1.7", "auto", "192.168.1.7:8421", "auto", "fd7a::1", "[fd7a::1]:8421"],
        ["10.0.0.5", "192.168.1.7"],
    )
    assert got == ("tcp://192.168.1.7:8421", "tcp://10.0.0.5:8421", "tcp://[fd7a::1]:8421")


def test_the_same_host_on_another_port_is_another_endpoint() -> None:
    got = advertised("tcp://127.0.0.1:8421", ["auto", "127.0.0.1:9000"], [])
    assert got == ("tcp://127.0.0.1:8421", "tcp://127.0.0.1:9000")


@pytest.mark.parametrize("entry", ["0.0.0.0", "::", "[::]:1", "host:0", "bad_host"])
def test_a_bad_entry_is_a_value_error(entry: str) -> None:
    with pytest.raises(ValueError):
        advertised("tcp://0.0.0.0:8421", ["auto", entry], IFACES)


@pytest.mark.parametrize("entry", ["fe80::1%eth0", "[fe80::1%eth0]", "[fe80::1%eth0]:8421"])
def test_a_scoped_ipv6_entry_is_refused(entry: str) -> None:
    """Python's ipaddress accepts a scope id (``%eth0``) but WIRE_RE does not: accepted,
    it would advertise ``tcp://[fe80::1%eth0]:8421``, which every peer refuses as
    malformed and our own registry store cannot read back."""
    with pytest.raises(ValueError):
        parse_entry(entry)
    with pytest.raises(ValueError):
        advertised("tcp://0.0.0.0:8421", [entry], [])


# --- advertised_http ------------------------------------------------------------------


@pytest.mark.parametrize(
    "bound, wire, expected",
    [
        ("http://127.0.0.1:8420", ("tcp://192.168.1.7:8421",), "http://127.0.0.1:8420"),
        ("http://192.168.1.7:8420", (), "http://192.168.1.7:8420"),
        ("http://[fd7a::1]:8420", ("tcp://10.0.0.5:8421",), "http://[fd7a::1]:8420"),
        ("http://0.0.0.0:8420", ("tcp://192.168.1.7:8421",), "http://192.168.1.7:8420"),
        ("http://0.0.0.0:8420", ("tcp://laptop.lan:9", "tcp://x:1"), "http://laptop.lan:8420"),
        ("http://[::]:8420", ("tcp://[fd7a::1]:8421",), "http://[fd7a::1]:8420"),
        ("http://0.0.0.0:8420", (), "http://127.0.0.1:8420"),
        ("http://[::]:8420", (), "http://127.0.0.1:8420"),
    ],
)
def test_advertised_http(bound: str, wire: tuple[str, ...], expected: str) -> None:
    assert advertised_http(bound, wire) == expected


# --- properties -----------------------------------------------------------------------

_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_NAMES = st.lists(_LABEL, min_size=1, max_size=3).map(".".join)
_PORTS = st.none() | st.integers(1, 65535)


@st.composite
def _entry(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["auto", "name", "v4", "v6"]))
    if kind == "auto":
        return "auto"
    port = draw(_PORTS)
    if kind == "v6":
        host = str(draw(st.ip_addresses(v=6)))
        bare = port is None and draw(st.booleans())
        return host if bare else f"[{host}]" + ("" if port is None else f":{port}")
    host = draw(_NAMES) if kind == "name" else str(draw(st.ip_addresses(v=4)))
    return host if port is None else f"{host}:{port}"


_IFACE_NAMES = st.sampled_from(["eth0", "wlan0", "tailscale0", "lo", "docker0", "veth1"])
_FOUND = st.lists(
    st.tuples(_IFACE_NAMES, st.ip_addresses().map(str) | st.just("aa:bb:cc:dd:ee:ff")),
    max_size=12,
)
_BINDS = st.sampled_from(["0.0.0.0", "[::]", "*", "127.0.0.1", "192.168.1.7", "[fd7a::1]"])


def _usable(entries: list[str]) -> bool:
    try:
        for entry in entries:
            if entry != "auto":
                parse_entry(entry)
    except ValueError:
        return False
    return True


@given(_BINDS, st.integers(1, 65535), st.lists(_entry(), max_size=10), _FOUND)
def test_advertised_is_dialable_bounded_and_unique(
    bind_host: str, port: int, entries: list[str], found: list[tuple[str, str]]
) -> None:
    assume(_usable(entries))
    got = advertised(f"tcp://{bind_host}:{port}", entries, rank_addresses(found))
    assert 1 <= len(got) <= MAX_ENDPOINTS
    assert len(set(got)) == len(got)
    for endpoint in got:
        match = WIRE_RE.match(endpoint)
        assert match, endpoint
        host, p = host_port(endpoint)
        assert host not in WILDCARDS and 0 < p < 65536


def _unmapped(text: str) -> str:
    """An IPv4-mapped IPv6 address as the IPv4 address it is (rank_addresses does)."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    mapped = address.ipv4_mapped if address.version == 6 else None
    return str(mapped) if mapped is not None else str(address)


@given(_FOUND)
def test_ranked_addresses_are_dialable_once_each_and_come_from_what_was_found(
    found: list[tuple[str, str]],
) -> None:
    ranked = rank_addresses(found)
    assert len(set(ranked)) == len(ranked)
    for text in ranked:
        address = ipaddress.ip_address(text)
        assert not (address.is_loopback or address.is_link_local or address.is_multicast)
        assert not address.is_unspecified
        assert any(_unmapped(a) == text and not i.startswith(("docker", "veth")) for i, a in found)
    versions = [ipaddress.ip_address(a).version for a in ranked]
    assert versions == sorted(versions)  # every IPv4 address before any IPv6
    assert rank_addresses(("eth0", a) for a in ranked) == ranked  # ranking is stable


def test_only_loopback_tells_an_offline_advertisement() -> None:
    assert only_loopback(("tcp://127.0.0.1:8421",)) and only_loopback(("tcp://[::1]:8421",))
    assert not only_loopback(("tcp://127.0.0.1:8421", "tcp://10.0.0.5:8421"))
    assert not only_loopback(("tcp://localhost:8421",))  # a name is not judged


def test_with_observed_appends_usable_addresses_on_our_port() -> None:
    wire = ("tcp://192.168.1.7:8421",)
    assert with_observed(wire, ["203.0.113.7", "127.0.0.1", "192.168.1.7", "fe80::1"]) == (
        "tcp://192.168.1.7:8421",
        "tcp://203.0.113.7:8421",
    )
    assert with_observed(wire, ["2001:db8::5"])[-1] == "tcp://[2001:db8::5]:8421"
    assert with_observed((), ["203.0.113.7"]) == ()
    many = [f"203.0.113.{i}" for i in range(20)]
    assert len(with_observed(wire, many)) == MAX_ENDPOINTS
