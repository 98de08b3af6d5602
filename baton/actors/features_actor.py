"""FeaturesActor: the mesh-wide component flags (baton.core.features) on one machine.

The holder alone sets them (``SetFeature``): a new version at its epoch, signed with its
key, kept (``data/features.json``) and sent to every member at once and every RESEND_MS
(``features``), so a member that missed a change, joined since or restarted catches
up. A new holder signs what it has at its own epoch and sends it; its predecessor's
change that was on its way when the role moved is taken when it lands, if newer than
what it had, and signed anew. A member takes flags only as ``judge`` allows (signed by
their signer, the holder its lease view names at that epoch, newer; over flags of an
epoch past the lease's, from a lease store begun anew, any): anything else is refused,
counted (``features.refused.<why>``) and logged at most once a minute per kind, and
changes nothing. Flags that come before the lease's news of their holder wait for it
(one per member).

What the flags switch is read through a FeatureGate, which the components consult
(StateSyncActor, SecretSyncActor); its state changes only here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.adapters.metrics import Counters
from baton.core.errors import (
    FeatureError,
    FeatureNotHolder,
    FeatureRefused,
    FlagsNotFromHolder,
    ForgedFlags,
    PeerFault,
)
from baton.core.features import (
    COMPONENTS,
    SIGNED,
    FeatureFlags,
    FeatureFlagsStore,
    check_name,
    judge,
)
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.ratelimit import RateLimiter
from baton.core.signatures import Signer, Verify
from baton.wire.envelope import Envelope, make_envelope, new_message_id

log = logging.getLogger("baton.features")

RESEND_MS = 5000
ROUTES = ("features",)


class FeatureGate:
    """What is on, as this machine last took it; read from any thread (a reference
    swapped whole), written by the FeaturesActor alone."""

    def __init__(self, flags: FeatureFlags | None = None) -> None:
        self.flags = flags or FeatureFlags()

    def enabled(self, name: str) -> bool:
        return self.flags.enabled(name)


@dataclass(frozen=True)
class SetFeature:
    """The holder turns ``name`` (one of SIGNED) on or off."""

    name: str
    enabled: bool


@dataclass(frozen=True)
class GetFeatures:
    pass


class FeaturesActor(pykka.ThreadingActor):
    def __init__(
        self,
        me: str,
        *,
        store: FeatureFlagsStore,
        gate: FeatureGate,
        send: Callable[[Envelope], bool],
        signer: Signer,
        verify: Verify,
        counters: Counters,
        rng: Callable[[int], bytes],
    ) -> None:
        super().__init__()
        self.me = me
        self.store = store
        self.gate = gate
        self.send = send
        self.signer = signer
        self.verify = verify
        self.counters = counters
        self.rng = rng
        self.flags = store.load()
        self.gate.flags = self.flags
        self.keys: dict[str, bytes] = {}  # each active peer's Ed25519 key
        self.holder: tuple[str | None, int] = (None, 0)
        self.previous: tuple[str | None, int] = (None, 0)  # the holder before this one
        self.before = self.flags  # what a new holder had before it signed it anew
        self.holding = False
        self.next_send = 0.0
        self.ahead: dict[str, FeatureFlags] = {}  # per signer: flags the lease view lags
        self.limiter = RateLimiter(rate_per_s=1 / 60, burst=1)  # a log line per kind
        self.now_ms = 0.0

    def on_receive(self, message: Any) -> Any:
        match message:
            case Tick(now_ms=now):
                self.now_ms = now
                if self.holding and now >= self.next_send:
                    self.next_send = now + RESEND_MS
                    self._send_all()
            case LeaseChanged(phase=phase, holder=holder, epoch=epoch):
                self._lease(phase is Phase.HOLDING, holder, epoch)
            case MembersChanged(peers=peers):
                new = {p.machine_id for p in peers} - set(self.keys)
                self.keys = {p.machine_id: p.identity.signing_public for p in peers}
                if self.holding and new:
                    self.next_send = 0.0  # at the next tick
            case EnvelopeReceived(envelope=env):
                self._received(env)
            case SetFeature(name=name, enabled=enabled):
                return self._change(name, enabled)
            case GetFeatures():
                return self.view()
            case _:
                raise TypeError(f"FeaturesActor: unexpected message {message!r}")
        return None

    def _lease(self, holding: bool, holder: str | None, epoch: int) -> None:
        if (holder, epoch) != self.holder:
            self.previous = self.holder
        self.holder, self.holding = (holder, epoch), holding
        mine = (self.flags.signer, self.flags.epoch) == (self.me, epoch)
        if holding and not mine:  # a new holder: its own now, at its epoch
            self.before = self.flags
            self._set(self.flags.changed(epoch))
        waiting, self.ahead = self.ahead, {}
        for flags in waiting.values():  # what came before the lease's news
            if flags.epoch >= self.previous[1]:
                self._judged(flags, flags.signer)

    def view(self) -> dict[str, Any]:
        f = self.flags
        return {
            "flags": {n: f.enabled(n) for n in SIGNED},
            "epoch": f.epoch,
            "version": f.version,
            "set_by": f.signer or None,
            "holder": self.holding,
        }

    def _change(self, name: str, enabled: bool) -> dict[str, Any]:
        if check_name(name) not in SIGNED:
            raise FeatureRefused(f"{name} has a switch of its own: {COMPONENTS[name]}")
        if not self.holding:
            who = self.holder[0]
            if who == self.me:
                raise FeatureNotHolder(
                    "this machine's lease renewal is not confirmed yet: try again"
                )
            raise FeatureNotHolder(f"only the awake machine changes flags; {who or 'nobody'} holds")
        disabled = self.flags.disabled - {name} if enabled else self.flags.disabled | {name}
        self._set(self.flags.changed(self.holder[1], disabled=disabled))
        log.info("features: %s turned %s at epoch %d", name, "on" if enabled else "off",
                 self.holder[1])  # fmt: skip
        return self.view()

    def _set(self, flags: FeatureFlags) -> None:
        self._take(flags.sign(self.signer))
        self.counters.inc("features.changes")
        self._send_all()

    def _take(self, flags: FeatureFlags) -> None:
        try:
            self.store.keep(flags)
        except FeatureError as exc:  # the disk: in force here, kept at the next change
            self.counters.inc("features.errors")
            log.error("features: %s", exc.detail)
        self.flags = flags
        self.gate.flags = flags

    def _send_all(self) -> None:
        if self.flags.signer != self.me:
            return  # nothing of this holder's to say yet
        body = {"flags": self.flags.to_dict()}
        for peer in sorted(self.keys.keys() - {self.me}):
            env = make_envelope(
                "features", self.me, peer, body, new_message_id(self.rng), epoch=self.flags.epoch
            )
            self.send(env)

    def _received(self, env: Envelope) -> None:
        if flags_same(env, self.flags):
            return  # the holder's resend of what this machine has
        try:
            flags = FeatureFlags.from_dict(env.body["flags"])
            if flags.signer != env.sender or flags.epoch != env.epoch:
                raise ForgedFlags(f"flags of {flags.signer} relayed by {env.sender}")
        except PeerFault as exc:
            self._refused(exc, env.sender)
            return
        self._judged(flags, env.sender)

    def _judged(self, flags: FeatureFlags, sender: str) -> None:
        """A member takes the holder's flags; a new holder takes its predecessor's last
        change, which was on its way when the role moved, over what it had, and makes
        it its own."""
        if self.holding:
            holder, current = self.previous, self.before
        else:  # flags of an epoch past the lease's (a store begun anew): any newer one
            holder = self.holder
            current = self.flags if self.flags.epoch <= holder[1] else FeatureFlags()
        try:
            judge(flags, current, holder=holder, members=self.keys, verify=self.verify)
        except FlagsNotFromHolder as exc:
            if flags.epoch > self.holder[1] and sender in self.keys:
                self.ahead[sender] = flags  # judged again at the lease's news
                self.counters.inc("features.ahead")
            else:
                self._refused(exc, sender)
            return
        except PeerFault as exc:
            self._refused(exc, sender)
            return
        if self.holding:
            self.before = flags
            self._set(self.flags.changed(self.holder[1], disabled=flags.disabled))
        else:
            self._take(flags)
        self.counters.inc("features.kept")
        log.info("features: %s from %s at epoch %d",
                 ", ".join(f"{n} {'on' if flags.enabled(n) else 'off'}" for n in SIGNED),
                 sender, flags.epoch)  # fmt: skip

    def _refused(self, exc: PeerFault, sender: str) -> None:
        self.counters.inc(f"features.refused.{exc.code}")
        if self.limiter.allow(exc.code, self.now_ms / 1000):
            log.warning("features: flags from %s refused: %.300s", sender, exc.detail)


def flags_same(env: Envelope, flags: FeatureFlags) -> bool:
    """Whether ``env`` carries exactly ``flags`` (the holder's resend)."""
    return env.body.get("flags") == flags.to_dict()
