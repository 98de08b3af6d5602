"""PeerMonitorActor: pings every active peer and answers their pings.

It owns a PingTracker (baton.core.ping) and sends through the Transport port; it
never waits on another actor. Pings go out on Tick; a ping received is answered at
once with a pong echoing its id; a pong updates round-trip time and reachability.
After a ping it also tells the peer the address its connections come from ("seen"),
when that changed and every SEEN_EVERY pings: the peer may advertise it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pykka

from baton.actors.messages import EnvelopeReceived, GetPeerReports, MembersChanged, Tick
from baton.adapters.metrics import Counters
from baton.build import THIS
from baton.core.clock import Clock
from baton.core.ping import PeerReport, PingTracker
from baton.core.versions import FIELDS as VERSION_FIELDS
from baton.core.versions import Versions
from baton.wire.envelope import Envelope, make_envelope, new_message_id
from baton.wire.transport import Transport

log = logging.getLogger("baton.peers")

SEEN_EVERY = 30  # pings from a peer between two "seen" that say the same


class PeerMonitorActor(pykka.ThreadingActor):
    def __init__(
        self,
        machine_id: str,
        *,
        transport: Transport,
        clock: Clock,
        counters: Counters,
        interval_ms: float,
        rng: Callable[[int], bytes],
        heard: Callable[[str, float], None] = lambda peer, now_ms: None,
    ) -> None:
        super().__init__()
        self.machine_id = machine_id
        self.heard = heard  # a pong answered a ping of ours (the pool's registry hears it)
        self.transport = transport
        self.clock = clock
        self.counters = counters
        self.rng = rng
        self.tracker = PingTracker(interval_ms)
        self.told: dict[str, tuple[str, int]] = {}  # peer -> (address told, pings since)
        self.versions: dict[str, Versions] = {}  # what each peer's last ping said it runs
        self.bad: set[str] = set()  # peers whose versions did not read (logged once)

    def on_receive(self, message: Any) -> Any:
        match message:
            case Tick(now_ms=now):
                self._ping_due(now)
            case EnvelopeReceived(envelope=env) if env.type == "ping":
                self._versions(env)
                pong = make_envelope(
                    "pong",
                    self.machine_id,
                    env.sender,
                    {"ping_id": env.id},
                    new_message_id(self.rng),
                )
                self.transport.send(pong)
                self._tell_seen(env.sender)
            case EnvelopeReceived(envelope=env) if env.type == "pong":
                now = self.clock.monotonic_ms()
                rtt = self.tracker.pong(env.sender, env.body["ping_id"], now)
                if rtt is None:
                    self.counters.inc("peers.stray_pong")
                else:
                    self.heard(env.sender, now)
            case MembersChanged(peers=peers):
                ids = tuple(p.machine_id for p in peers)
                self.tracker.set_peers(ids)
                self.versions = {m: v for m, v in self.versions.items() if m in ids}
                self.told = {m: t for m, t in self.told.items() if m in ids}
            case GetPeerReports():
                return self.reports()
            case _:
                log.error("PeerMonitorActor: unexpected message %r", message)
        return None

    def _versions(self, ping: Envelope) -> None:
        """The versions a peer's ping says it runs (a ping without: an older baton)."""
        if not VERSION_FIELDS & set(ping.body):
            self.versions.pop(ping.sender, None)
            return
        try:
            self.versions[ping.sender] = Versions.from_dict(ping.body)
        except ValueError as exc:
            self.counters.inc("peers.bad_versions")
            if self.versions.pop(ping.sender, None) is not None or ping.sender not in self.bad:
                log.warning("a ping from %s says no versions we read: %s", ping.sender, exc)
            self.bad.add(ping.sender)  # logged once until it says something readable

    def _tell_seen(self, peer: str) -> None:
        address = self.transport.observed().get(peer)
        if not address:
            return
        told, since = self.told.get(peer, ("", SEEN_EVERY))
        if address == told and since + 1 < SEEN_EVERY:
            self.told[peer] = (told, since + 1)
            return
        seen = make_envelope(
            "seen", self.machine_id, peer, {"address": address}, new_message_id(self.rng)
        )
        if self.transport.send(seen):
            self.told[peer] = (address, 0)

    def reports(self) -> list[PeerReport]:
        reports = self.tracker.report(self.clock.monotonic_ms())
        said = self.versions
        return [replace(r, versions=said.get(r.machine_id)) for r in reports]

    def _ping_due(self, now_ms: float) -> None:
        for peer in self.tracker.due(now_ms):
            ping_id = new_message_id(self.rng)
            ping = make_envelope("ping", self.machine_id, peer, THIS.to_dict(), ping_id)
            sent = self.transport.send(ping)
            # An unsent ping still counts as an attempt, so the next one waits an interval.
            self.tracker.sent(peer, ping_id, now_ms)
            if not sent:
                self.counters.inc("peers.ping_unsent")
