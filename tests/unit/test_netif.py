"""This machine's addresses (psutil) and EndpointWatcher: the wire redials when the
addresses change, and the registry is told only when what we advertise changes."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from baton.adapters.netif import EndpointWatcher, interface_addresses
from baton.core.endpoints import rank_addresses
from tests.waits import wait_for

DEADLINE_S = 10.0


class Addresses:
    """The injected ``addresses`` callable: what the test says, counting each look."""

    def __init__(self, *initial: str) -> None:
        self._lock = threading.Lock()
        self._now: list[str] = list(initial)
        self._fail: Exception | None = None
        self.looks = 0

    def set(self, *addresses: str) -> None:
        with self._lock:
            self._now, self._fail = list(addresses), None

    def fail(self, exc: Exception) -> None:
        with self._lock:
            self._fail = exc

    def __call__(self) -> list[str]:
        with self._lock:
            self.looks += 1
            if self._fail is not None:
                raise self._fail
            return list(self._now)


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.announced: list[tuple[tuple[str, ...], str]] = []
        self.redials = 0
        self.gone: list[frozenset[str]] = []

    def announce(self, wire: tuple[str, ...], http: str) -> None:
        with self._lock:
            self.announced.append((wire, http))

    def redial(self, gone: frozenset[str]) -> None:
        with self._lock:
            self.redials += 1
            self.gone.append(gone)


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
    wait_for(condition, timeout, what, interval=0.005)


def watcher(
    addresses: Addresses,
    recorder: Recorder,
    every_s: float = 60.0,
    announce: Callable[[tuple[str, ...], str], None] | None = None,
) -> EndpointWatcher:
    return EndpointWatcher(
        "tcp://0.0.0.0:8421",
        http_url="http://0.0.0.0:8420",
        advertise=(),
        announce=announce or recorder.announce,
        redial=recorder.redial,
        addresses=addresses,
        every_s=every_s,
    )


@pytest.fixture
def running() -> Iterator[Callable[[EndpointWatcher], EndpointWatcher]]:
    started: list[EndpointWatcher] = []

    def start(w: EndpointWatcher) -> EndpointWatcher:
        started.append(w)
        w.start()
        return w

    try:
        yield start
    finally:
        for w in started:
            w.stop()
        assert not any(w.is_alive() for w in started), "a watcher did not stop"


# --- look -------------------------------------------------------------------------------


def test_look_advertises_the_addresses_and_redials_only_when_some_go_away() -> None:
    addresses, recorder = Addresses("192.168.1.7"), Recorder()
    w = watcher(addresses, recorder)
    assert w.look() == (("tcp://192.168.1.7:8421",), "http://192.168.1.7:8420")
    assert recorder.redials == 0  # the first look has nothing to compare with
    assert w.look() == (("tcp://192.168.1.7:8421",), "http://192.168.1.7:8420")
    assert recorder.redials == 0
    addresses.set("10.0.0.5", "192.168.1.7")
    assert w.look() == (
        ("tcp://10.0.0.5:8421", "tcp://192.168.1.7:8421"),
        "http://10.0.0.5:8420",
    )
    assert recorder.redials == 0  # a new address kills no connection
    assert w.look()[0] == ("tcp://10.0.0.5:8421", "tcp://192.168.1.7:8421")
    assert recorder.redials == 0
    addresses.set("10.0.0.5", "fd7a::1")
    w.look()
    assert recorder.gone == [frozenset({"192.168.1.7"})]  # only what went away
    assert w.last == (("tcp://10.0.0.5:8421",), "http://10.0.0.5:8420")
    assert recorder.announced == []  # look never announces: run does


def test_look_with_no_address_advertises_loopback_and_redials_when_they_go() -> None:
    addresses, recorder = Addresses("192.168.1.7"), Recorder()
    w = watcher(addresses, recorder)
    w.look()
    addresses.set()
    assert w.look() == (("tcp://127.0.0.1:8421",), "http://127.0.0.1:8420")
    assert recorder.redials == 1


def test_look_with_explicit_entries_still_redials_on_a_change() -> None:
    """What we advertise may not change (a DNS name), but our connections still died."""
    addresses, recorder = Addresses("192.168.1.7"), Recorder()
    w = EndpointWatcher(
        "tcp://0.0.0.0:8421",
        http_url="http://127.0.0.1:8420",
        advertise=("laptop.tail1234.ts.net",),
        announce=recorder.announce,
        redial=recorder.redial,
        addresses=addresses,
    )
    first = w.look()
    addresses.set("10.0.0.5")
    assert w.look() == first == (("tcp://laptop.tail1234.ts.net:8421",), "http://127.0.0.1:8420")
    assert recorder.redials == 1


# --- run ----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_run_announces_only_what_changed(running: Callable[..., EndpointWatcher]) -> None:
    addresses, recorder = Addresses("192.168.1.7"), Recorder()
    w = watcher(addresses, recorder, every_s=0.01)
    w.look()  # the node looks (and announces) once before it starts the thread
    running(w)
    seen = addresses.looks
    wait_until(lambda: addresses.looks >= seen + 5, "five looks with nothing new")
    assert recorder.announced == [] and recorder.redials == 0

    addresses.set("10.0.0.5")
    wait_until(lambda: recorder.announced, "the new endpoints to be announced")
    seen = addresses.looks
    wait_until(lambda: addresses.looks >= seen + 5, "five more looks")
    assert recorder.announced == [(("tcp://10.0.0.5:8421",), "http://10.0.0.5:8420")]
    assert recorder.redials == 1

    addresses.set("fd7a::1")  # redials, but a v4 bind advertises the same (none found)
    wait_until(lambda: recorder.redials == 2, "the redial")
    seen = addresses.looks
    wait_until(lambda: addresses.looks >= seen + 5, "five more looks")
    assert len(recorder.announced) == 1


@pytest.mark.timeout(60)
def test_run_announces_the_first_look_when_nobody_looked_before(
    running: Callable[..., EndpointWatcher],
) -> None:
    addresses, recorder = Addresses("192.168.1.7"), Recorder()
    running(watcher(addresses, recorder, every_s=0.01))
    wait_until(lambda: recorder.announced, "the first announcement")
    seen = addresses.looks
    wait_until(lambda: addresses.looks >= seen + 5, "five more looks")
    assert recorder.announced == [(("tcp://192.168.1.7:8421",), "http://192.168.1.7:8420")]


@pytest.mark.timeout(60)
def test_a_failed_look_is_tried_again(running: Callable[..., EndpointWatcher]) -> None:
    addresses, recorder = Addresses("192.168.1.7"), Recorder()
    w = watcher(addresses, recorder, every_s=0.01)
    w.look()
    addresses.fail(OSError("netlink is busy"))
    running(w)
    seen = addresses.looks
    wait_until(lambda: addresses.looks >= seen + 3, "three failed looks")
    assert w.is_alive() and recorder.announced == []
    assert recorder.redials == 0  # a look that failed saw no address go away
    addresses.set("10.0.0.5")
    wait_until(lambda: recorder.announced, "the announcement after the failures")
    assert recorder.announced == [(("tcp://10.0.0.5:8421",), "http://10.0.0.5:8420")]


@pytest.mark.timeout(60)
def test_a_failed_announce_does_not_end_the_watch(
    running: Callable[..., EndpointWatcher],
) -> None:
    """The module says the thread ends only on stop(); an announce that raises once
    must not end it."""
    addresses, recorder = Addresses("192.168.1.7"), Recorder()
    failures = [RuntimeError("the registry is busy")]

    def announce(wire: tuple[str, ...], http: str) -> None:
        if failures:
            raise failures.pop()
        recorder.announce(wire, http)

    w = watcher(addresses, recorder, every_s=0.01, announce=announce)
    w.look()
    running(w)
    addresses.set("10.0.0.5")
    wait_until(lambda: not failures, "the failing announce")
    addresses.set("10.0.0.6")  # (the failed one may be retried first: it is still new)
    latest = (("tcp://10.0.0.6:8421",), "http://10.0.0.6:8420")
    wait_until(lambda: latest in recorder.announced or not w.is_alive(), "an announce or the end")
    assert w.is_alive() and recorder.announced[-1] == latest


@pytest.mark.timeout(60)
def test_stop_ends_the_thread_promptly_even_with_a_long_interval(
    running: Callable[..., EndpointWatcher],
) -> None:
    w = running(watcher(Addresses("192.168.1.7"), Recorder(), every_s=3600))
    assert w.is_alive()
    started = time.monotonic()
    w.stop()
    assert not w.is_alive() and time.monotonic() - started < 5


# --- the real interfaces --------------------------------------------------------------------


def test_interface_addresses_are_strings_rank_addresses_keeps() -> None:
    found = interface_addresses()
    assert isinstance(found, list) and all(isinstance(a, str) for a in found)
    assert len(set(found)) == len(found)
    assert rank_addresses(("eth0", a) for a in found) == found
    for text in found:
        address = ipaddress.ip_address(text)
        assert not (address.is_loopback or address.is_link_local or address.is_unspecified)
