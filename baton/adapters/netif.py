"""This machine's network addresses, and the thread that notices when they change.

``interface_addresses`` asks psutil for the addresses of the interfaces that are up and
ranks them (baton.core.endpoints.rank_addresses). ``EndpointWatcher`` (thread
"baton-netwatch") looks every WATCH_S: when addresses went away (a laptop joined
another network, an address was renumbered) it has the wire redial the links connected
from them (they are dead; the others, and other nodes' addresses coming and going on
the same host, are left alone), and when what this machine
advertises changes it tells ``announce`` (the RegistryActor signs and sends it). With no
usable address (offline) it announces nothing: the last announcement stands. A
failing look is logged (rate-limited) and tried again; the thread ends only on stop().
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence

import psutil

from baton.core.endpoints import advertised, advertised_http, only_loopback, rank_addresses
from baton.core.settings import Settings

log = logging.getLogger("baton.netif")

WATCH_S = 1.0
_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def interface_addresses() -> list[str]:
    """The addresses worth advertising, best first (see rank_addresses); OSError when
    the system will not say."""
    stats = psutil.net_if_stats()
    listed = psutil.net_if_addrs()
    found = [
        (name, address.address)
        for name, addresses in listed.items()
        if name not in stats or stats[name].isup
        for address in addresses
        if address.family in _FAMILIES
    ]
    return rank_addresses(found)


def advertised_by(settings: Settings) -> tuple[tuple[str, ...], str]:
    """(wire endpoints, http URL) a machine with these settings advertises now, before
    its node runs (a joiner's card): the node announces what it finds once it runs."""
    wire = advertised(settings.wire_bind.zmq_endpoint, settings.advertise, interface_addresses())
    http = settings.door.url if settings.door is not None else settings.http.url
    return wire, advertised_http(http, wire)


class EndpointWatcher(threading.Thread):
    def __init__(
        self,
        bind: str,
        *,
        http_url: str,
        advertise: Sequence[str],
        announce: Callable[[tuple[str, ...], str], None],
        redial: Callable[[frozenset[str]], None],
        addresses: Callable[[], list[str]] = interface_addresses,
        every_s: float = WATCH_S,
    ) -> None:
        super().__init__(name="baton-netwatch", daemon=True)
        self._bind, self._http, self._advertise = bind, http_url, tuple(advertise)
        self._announce, self._redial, self._addresses = announce, redial, addresses
        self._every_s = every_s
        self._stopping = threading.Event()
        self._seen: list[str] | None = None
        self.last: tuple[tuple[str, ...], str] | None = None

    def look(self) -> tuple[tuple[str, ...], str]:
        """(wire endpoints, http URL) to advertise now; when addresses went away since
        the last look, the wire first redials what was connected from them."""
        try:
            addresses = self._addresses()
        except OSError as exc:  # what we knew stands: no address went away for that
            log.warning("cannot list this machine's network interfaces: %s", exc)
            addresses = [] if self._seen is None else self._seen
        if self._seen is not None and addresses != self._seen:
            log.info("this machine's addresses changed: %s", ", ".join(addresses) or "none")
            gone = frozenset(self._seen) - frozenset(addresses)
            if gone:
                self._redial(gone)
        self._seen = addresses
        wire = advertised(self._bind, self._advertise, addresses)
        self.last = (wire, advertised_http(self._http, wire))
        return self.last

    def run(self) -> None:
        """Look every few seconds; announce what changed (the node announced the first)."""
        said = self.last
        while not self._stopping.wait(self._every_s):
            try:
                now = self.look()
                if now != said and not only_loopback(now[0]):  # offline: the last stands
                    self._announce(*now)
                    said = now
            except Exception as exc:  # never end the watch over one failed look
                log.warning("cannot look at or announce this machine's addresses: %r", exc)

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=5)
