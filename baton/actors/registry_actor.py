"""RegistryActor: the one owner of this machine's MachineRegistry and its store.

It starts from the registry the node opened (baton.core.registry.open_registry),
saves it and announces the active peers. Every change is checked in full
(MachineRegistry.add) before it is saved, and saved before it is announced, so what
peers are admitted on the wire never runs ahead of what is on disk. A refused change
raises to the asker and changes nothing.

The awake member sends its whole registry ("roster") to every peer after each change
and every ROSTER_EVERY_MS; a peer applies a roster only from the member its registry
says is awake (MachineRegistry.merge_roster), so standbys learn of each other.

Every member announces its own endpoints (baton.core.announce), signed with its own
key, to every peer when they change (AnnounceSelf) and every ROSTER_EVERY_MS; an
announcement is accepted only from the machine it names, newest wins, and it is kept in
that machine's entry, so the wire dials the new endpoints at once and the awake
member's roster carries them on. A refused one is counted
(``registry.announce_refused.<malformed|forged|stale>``) and logged, rate-limited.
With ``observe`` (the wire binds every interface) the addresses peers say they see our
connections come from ("seen") are announced too, after our own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pykka

from baton.actors.messages import (
    AddMachine,
    AnnounceSelf,
    CheckCard,
    EnvelopeReceived,
    GetSelf,
    ListMachines,
    RevokeMachine,
    Tick,
)
from baton.adapters.metrics import Counters
from baton.build import THIS
from baton.core.announce import Announcement, accept, next_announcement, sign_announcement
from baton.core.clock import Clock
from baton.core.endpoints import rank_addresses, with_observed
from baton.core.errors import AnnouncementRefused, BadRequest, BatonError, InvalidCard
from baton.core.lease_types import LeaseChanged
from baton.core.registry import (
    MachineEntry,
    MachineRegistry,
    RegistryStore,
    Role,
    Signer,
    Verify,
    entry_from_card,
)
from baton.wire.envelope import Envelope, make_envelope, new_message_id

log = logging.getLogger("baton.registry")

#: How often the awake member re-sends its roster, so a peer that was down catches up.
ROSTER_EVERY_MS = 5000
#: How often it tries again a peer its last roster did not reach (not connected yet):
#: a standby that misses a new member until the next round could take the lease over
#: without it, and then refuse it (its allow-list would not name it).
ROSTER_RETRY_MS = 250

#: Called with the active peers after every change (and once at start).
PeersListener = Callable[[Sequence[MachineEntry]], None]


class RegistryActor(pykka.ThreadingActor):
    def __init__(
        self,
        registry: MachineRegistry,
        store: RegistryStore,
        *,
        clock: Clock,
        listeners: Sequence[PeersListener],
        send: Callable[[Envelope], bool] | None = None,
        counters: Counters | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        signer: Signer | None = None,
        verify: Verify | None = None,
        may_lead: Callable[[], bool] | None = None,
        observe: bool = False,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.store = store
        self.clock = clock
        self.listeners = list(listeners)
        self.send = send
        self.counters = counters or Counters()
        self.rng = rng
        self.signer = signer
        self.verify: Verify = verify or (lambda public, data, signature: False)
        self.last_roster_ms: float | None = None
        self.unsent: set[str] = set()  # peers the last roster did not reach
        self.unannounced: set[str] = set()  # peers our last announcement did not reach
        self.retried_ms = 0.0
        # With a lease store, the lease says who leads (LeaseGate): an "awake" role in
        # the registry is only history unless this machine may act right now.
        self.may_lead = may_lead
        self.observe = observe
        self.observed: dict[str, str] = {}  # peer -> the address it sees us come from
        self.observed_new = False  # announced at the next round (ROSTER_EVERY_MS), not at
        # once: a member saying one thing then another cannot make us re-announce at will
        self.base: tuple[tuple[str, ...], str] | None = None  # the last AnnounceSelf

    def on_start(self) -> None:
        self._commit(self.registry)

    def on_receive(self, message: Any) -> Any:
        match message:
            case ListMachines():
                return self.registry.listing()
            case GetSelf():
                return self.registry.me
            case CheckCard(card=card, readmit=readmit):
                self._candidate(card, readmit)
                return None
            case RevokeMachine(name=name, reason=reason):
                return self._revoke(name, reason)
            case AddMachine(card=card, readmit=readmit):
                entry, registry = self._candidate(card, readmit)
                self._commit(registry)
                log.info("registry: added %s (%s)", entry.nickname, entry.machine_id)
                self._send_roster()
                return registry.get(entry.machine_id)
            case AnnounceSelf(wire=wire, http=http):
                self.base = (wire, http)
                return self._announce_self(wire, http)
            case Tick(now_ms=now):
                if self.last_roster_ms is None or now - self.last_roster_ms >= ROSTER_EVERY_MS:
                    if self.observed_new and self.base is not None:
                        self.observed_new = False
                        self._announce_self(*self.base)
                    self._send_roster()
                    self._send_announcement()
                elif (self.unsent or self.unannounced) and now - self.retried_ms >= ROSTER_RETRY_MS:
                    self.retried_ms = now
                    if self.unsent:
                        self._send_roster(set(self.unsent))
                    if self.unannounced:
                        self._send_announcement(set(self.unannounced))
                return None
            case EnvelopeReceived(envelope=env) if env.type == "roster":
                self._apply_roster(env)
                return None
            case EnvelopeReceived(envelope=env) if env.type == "announce":
                self._apply_announcement(env)
                return None
            case EnvelopeReceived(envelope=env) if env.type == "seen":
                self._seen(env.sender, env.body["address"])
                return None
            case LeaseChanged(holder=holder):
                if holder is not None:  # the lease has a holder: the awake member
                    self._follow_holder(holder)
                return None
        raise TypeError(f"RegistryActor: unexpected message {message!r}")

    def _send_roster(self, only: set[str] | None = None) -> None:
        """The awake member tells every peer (or those in ``only``) the whole registry
        (small, idempotent); a peer it did not reach is tried again soon."""
        if only is None:
            self.last_roster_ms = self.clock.monotonic_ms()
            self.unsent = set()
        if self.send is None or not self._leading():
            self.unsent = set()
            return
        machines = [e.to_dict() for e in self.registry.listing()]
        for peer in self.registry.active_peers():
            if only is not None and peer.machine_id not in only:
                continue
            env = make_envelope(
                "roster",
                self.registry.self_id,
                peer.machine_id,
                {"machines": machines},
                new_message_id(self.rng),
            )
            try:
                sent = self.send(env)
            except ValueError as exc:  # larger than max_frame_bytes: our limit, not theirs
                self.counters.inc("registry.roster_unsent")
                log.error("registry: roster to %s not sent: %s", peer.machine_id, exc)
                continue
            if sent:
                self.counters.inc("registry.roster_sent")
                self.unsent.discard(peer.machine_id)
            else:
                self.unsent.add(peer.machine_id)

    def _announce_self(self, wire: tuple[str, ...], http: str) -> Announcement | None:
        """Announce these endpoints if they are new (signed, kept in our own entry,
        sent to every peer); our current announcement either way."""
        me = self.registry.me
        if self.observe:
            wire = with_observed(wire, self.observed.values())
        now_ms = int(self.clock.wall_s() * 1000)
        fresh = next_announcement(me.announcement, me.machine_id, wire, http, now_ms, versions=THIS)
        if fresh is None or self.signer is None:
            return me.announcement
        signed = sign_announcement(fresh, self.signer)
        self._commit(self.registry.with_announcement(signed))
        log.info("registry: announcing %s (seq %d)", ", ".join(wire), signed.seq)
        self._send_announcement()
        self._send_roster()
        return signed

    def _seen(self, peer: str, address: str) -> None:
        """``peer`` sees our connections come from ``address``: with ``observe``, one
        more endpoint to announce when it is new (and one a peer could use)."""
        if peer not in {p.machine_id for p in self.registry.active_peers()}:
            return
        kept = rank_addresses([("seen", address)])
        if not self.observe or not kept or self.observed.get(peer) == kept[0]:
            return
        self.observed[peer] = kept[0]
        self.observed_new = True

    def _send_announcement(self, only: set[str] | None = None) -> None:
        """Our newest announcement to every peer (or those in ``only``); a peer it did
        not reach is tried again soon."""
        mine = self.registry.me.announcement
        if self.send is None or mine is None:
            return
        if only is None:
            self.unannounced = set()
        body = {"announcement": mine.to_dict()}
        for peer in self.registry.active_peers():
            if only is not None and peer.machine_id not in only:
                continue
            env = make_envelope(
                "announce", self.registry.self_id, peer.machine_id, body, new_message_id(self.rng)
            )
            if self.send(env):
                self.counters.inc("registry.announce_sent")
                self.unannounced.discard(peer.machine_id)
            else:
                self.unannounced.add(peer.machine_id)

    def _apply_announcement(self, env: Envelope) -> None:
        try:
            announcement = Announcement.from_dict(env.body["announcement"])
            known = self.registry.entries.get(announcement.machine_id)
            if known is not None and known.announcement == announcement:
                return  # the periodic repeat of what we have
            accept(
                announcement,
                env.sender,
                self.registry.signing_keys(),
                self.registry.announced(),
                self.verify,
            )
        except AnnouncementRefused as exc:
            kind = exc.code.removeprefix("announcement_")
            self.counters.inc(f"registry.announce_refused.{kind}")
            log.warning(
                "registry: announcement from %s refused (%s): %s",
                env.sender,
                kind,
                exc.detail,
                extra={"limit_key": f"announce:{env.sender}:{kind}"},
            )
            return
        self.counters.inc("registry.announce_accepted")
        self._commit(self.registry.with_announcement(announcement))
        log.info(
            "registry: %s is at %s (seq %d)",
            announcement.machine_id,
            ", ".join(announcement.wire),
            announcement.seq,
        )
        if self._leading():
            self._send_roster()

    def _apply_roster(self, env: Envelope) -> None:
        try:
            merged = self.registry.merge_roster([], env.sender, self.verify)  # sender first
            members = [MachineEntry.from_dict(m) for m in env.body["machines"]]
            merged = self.registry.merge_roster(members, env.sender, self.verify)
        except Exception as exc:  # a peer's bytes must never kill the registry's owner
            self.counters.inc("registry.roster_refused")
            detail = exc.detail if isinstance(exc, BatonError) else repr(exc)
            log.warning("registry: roster from %s refused: %s", env.sender, detail)
            return
        if merged != self.registry:
            self._commit(merged)
            log.info(
                "registry: roster from %s applied (%d members)", env.sender, len(merged.entries)
            )

    def _leading(self) -> bool:
        """This machine is the awake member (and, with a lease, the lease agrees)."""
        awake = self.registry.me.role is Role.AWAKE
        return awake and (self.may_lead is None or self.may_lead())

    def _follow_holder(self, holder: str) -> None:
        if holder not in self.registry.entries:
            log.warning("registry: the lease holder %s is not a member", holder)
            return
        try:
            registry = self.registry.with_awake(holder)
        except BatonError as exc:
            log.warning("registry: cannot follow the lease holder: %s", exc.detail)
            return
        if registry != self.registry:
            self._commit(registry)
            log.info("registry: %s is awake (lease holder)", holder)
            self._send_roster()

    def _candidate(
        self, card: Mapping[str, Any], readmit: bool
    ) -> tuple[MachineEntry, MachineRegistry]:
        entry = entry_from_card(card, self.clock.wall_s())
        if entry.machine_id == self.registry.self_id:
            raise InvalidCard("a machine cannot add itself as a peer")
        if card.get("announcement") is not None:  # its own, signed: its versions with it
            entry = replace(entry, announcement=self._own_announcement(entry, card))
        return entry, self.registry.add(entry, readmit)

    def _own_announcement(self, entry: MachineEntry, card: Mapping[str, Any]) -> Announcement:
        """The announcement a card carries, if the machine it names signed it."""
        try:
            said = Announcement.from_dict(card["announcement"])
            members = {entry.machine_id: entry.identity.signing_public}
            accept(said, entry.machine_id, members, {}, self.verify)
        except AnnouncementRefused as exc:
            raise InvalidCard(f"the card's announcement: {exc.detail}") from None
        return said

    def _revoke(self, name: str, reason: str) -> MachineEntry:
        if not self._leading():
            raise BadRequest("only the awake machine revokes members; run this there")
        target = self.registry.find(name)
        registry = self.registry.revoke(target.machine_id, self.clock.wall_s(), reason)
        if registry is not self.registry:
            self._commit(registry)  # the allow-list drops it before anyone hears of it
            log.warning("registry: revoked %s (%s): %s", target.nickname, target.machine_id, reason)
            self._send_roster()
        return registry.get(target.machine_id)

    def _commit(self, registry: MachineRegistry) -> None:
        if self.signer is not None and registry.me.role is Role.AWAKE:
            registry = registry.signed(self.signer)  # the awake member vouches for all
        self.store.save(registry)
        self.registry = registry
        peers = registry.active_peers()
        active = {p.machine_id for p in peers}
        self.observed = {m: a for m, a in self.observed.items() if m in active}
        for listener in self.listeners:
            listener(peers)
