"""PoolActor: the pool's state on one machine (docs/DESIGN.md, "The pool").

The holder alone changes the pool's state (on or off now; pins and placements as the
SessionRouter comes to use it), each change a new version under its lease epoch, kept
in its TopicPlacementPinStore and sent to every member at once and again every
RESEND_MS (a member that missed one, or joined since, catches up). A standby takes a
state only from the machine its lease view says holds, at that epoch, and keeps it only
if it is newer (by term, then version): so a new holder starts from the last state its
predecessor sent, and a deposed holder's late state never overwrites a newer one.

A peer's bytes are decoded strictly; whatever is refused is logged, counted
(``pool.refused.*``) and dropped. A store that fails is counted (``pool.errors``) and
logged; the actor lives on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pykka

from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.adapters.metrics import Counters
from baton.core.errors import PoolError, PoolNotHolder, PoolRefused
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.pool_state import PoolState, TopicPlacementPinStore
from baton.wire.pool_transport import PoolTransport, open_state

log = logging.getLogger("baton.pool")

ROUTES = ("pool_state",)
RESEND_MS = 5000


@dataclass(frozen=True)
class SetPool:
    """Turn the pool on or off (the holder only); answers GetPool's view, or raises
    PoolNotHolder on a standby."""

    enabled: bool


@dataclass(frozen=True)
class GetPool:
    """The pool as this machine holds it (status, ``baton pool status``)."""


class PoolActor(pykka.ThreadingActor):
    def __init__(
        self,
        me: str,
        *,
        store: TopicPlacementPinStore,
        transport: PoolTransport,
        counters: Counters,
    ) -> None:
        super().__init__()
        self.me = me
        self.store = store
        self.transport = transport
        self.counters = counters
        self.peers: set[str] = set()
        self.holder: tuple[str | None, int] = (None, 0)
        self.holding = False
        self.next_send = 0.0

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *failure: object) -> None:
        self._close()

    def _close(self) -> None:
        try:
            self.store.close()
        except PoolError as exc:
            log.warning("pool: closing %r: %s", self.store, exc.detail)

    def on_receive(self, message: Any) -> Any:
        try:
            return self._receive(message)
        except PoolNotHolder:
            raise
        except PoolError as exc:  # the disk: this step is lost, the actor lives on
            self.counters.inc("pool.errors")
            log.error("pool: %s failed: %s", type(message).__name__, exc.detail)
            if isinstance(message, SetPool | GetPool):
                raise
            return None

    def _receive(self, message: Any) -> Any:
        match message:
            case Tick(now_ms=now):
                if self.holding and now >= self.next_send:
                    self.next_send = now + RESEND_MS
                    self._send_all()
            case LeaseChanged(phase=phase, holder=holder, epoch=epoch):
                self.holder = (holder, epoch)
                self.holding = phase is Phase.HOLDING
                self.next_send = 0.0  # a new holder sends what it has at its next tick
                if self.holding:
                    self._restamp(epoch)
            case MembersChanged(peers=peers):
                self.peers = {p.machine_id for p in peers}
            case EnvelopeReceived(envelope=env) if env.type == "pool_state":
                self._received(env)
            case SetPool(enabled=enabled):
                return self._set(enabled)
            case GetPool():
                return self._view()
            case _:
                raise TypeError(f"PoolActor: unexpected message {message!r}")
        return None

    def _set(self, enabled: bool) -> dict[str, Any]:
        holder, epoch = self.holder
        if not self.holding:
            raise PoolNotHolder(f"only the holder changes the pool: ask {holder or 'nobody yet'}")
        # a new version even when it changes nothing here: a mirror that still holds an
        # older holder's other answer takes this one
        self.store.keep(self.store.load().changed(epoch, enabled=enabled))
        self.counters.inc("pool.changes")
        log.info("pool: turned %s at epoch %d", "on" if enabled else "off", epoch)
        self._send_all()
        return self._view()

    def _restamp(self, epoch: int) -> None:
        """A new holder makes what it holds its own: the same state at its term, so
        every mirror takes it over whatever an older holder sent them."""
        state = self.store.load()
        if state != PoolState() and state.term < epoch:
            self.store.keep(state.changed(epoch))

    def _send_all(self) -> None:
        state = self.store.load()
        if state == PoolState():
            return  # nothing was ever set: nothing to mirror
        for peer in sorted(self.peers):
            try:
                self.transport.send_state(peer, self.holder[1], state)
            except ValueError as exc:  # past the frame limit
                self.counters.inc("pool.too_big")
                log.error("pool: the state is too big to send: %s", exc)
                return

    def _received(self, env: Any) -> None:
        holder, epoch = self.holder
        if self.holding or env.sender != holder or env.epoch != epoch:
            self.counters.inc("pool.refused.not_holder")
            return
        try:
            state = open_state(env)
        except PoolRefused as exc:  # from_json refuses anything else it meets
            self.counters.inc("pool.refused.malformed")
            log.warning("pool: a state from %s refused: %.300s", env.sender, exc.detail)
            return
        if self.store.keep(state):
            self.counters.inc("pool.kept")

    def _view(self) -> dict[str, Any]:
        state = self.store.load()
        return {
            "enabled": state.enabled,
            "term": state.term,
            "version": state.version,
            "pins": len(state.pins),
            "placements": len(state.placements),
            "role": "holder" if self.holding else "mirror",
        }
