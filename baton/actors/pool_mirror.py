"""PoolMirror: the pool's state on one machine, as the PoolActor keeps and replicates it
(docs/DESIGN.md, "The pool").

The holder alone changes it, each change a new version under its lease epoch, kept in
the TopicPlacementPinStore and sent to every member; a member takes a state only from
the machine its lease view says holds, at that epoch, and keeps it only if newer (by
term, then version). ``state`` is always what the store holds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from baton.adapters.metrics import Counters
from baton.core.errors import PoolRefused
from baton.core.pool_placement import Pin, Placement
from baton.core.pool_state import PoolState, TopicPlacementPinStore
from baton.wire.pool_transport import PoolTransport, open_state

log = logging.getLogger("baton.pool")


class PoolMirror:
    def __init__(
        self, store: TopicPlacementPinStore, transport: PoolTransport, counters: Counters
    ) -> None:
        self.store = store
        self.transport = transport
        self.counters = counters
        self.state = store.load()

    def keep(self, state: PoolState) -> bool:
        kept = self.store.keep(state)
        if kept:
            self.state = state
        return kept

    def set(self, enabled: bool, epoch: int, peers: Iterable[str]) -> None:
        """The holder of ``epoch`` turns the pool on or off, and sends it at once."""
        # a new version even when it changes nothing here: a mirror that still holds an
        # older holder's other answer takes this one
        self.keep(self.state.changed(epoch, enabled=enabled))
        self.counters.inc("pool.changes")
        log.info("pool: turned %s at epoch %d", "on" if enabled else "off", epoch)
        self.send_all(peers, epoch)

    def restamp(self, epoch: int) -> None:
        """A new holder makes what it holds its own: the same state at its term, so
        every mirror takes it over whatever an older holder sent them."""
        if self.state != PoolState() and self.state.term < epoch:
            self.keep(self.state.changed(epoch))

    def keep_routes(
        self, pins: Mapping[str, Pin], placements: Mapping[str, Placement], epoch: int
    ) -> bool:
        """The router's pins and placements kept, if they changed; whether they did."""
        if pins == self.state.pins and placements == self.state.placements:
            return False
        self.keep(self.state.changed(epoch, pins=pins, placements=placements))
        return True

    def send_all(self, peers: Iterable[str], epoch: int) -> None:
        if self.state == PoolState():
            return  # nothing was ever set: nothing to mirror
        for peer in sorted(peers):
            try:
                self.transport.send_state(peer, epoch, self.state)
            except ValueError as exc:  # past the frame limit
                self.counters.inc("pool.too_big")
                log.error("pool: the state is too big to send: %s", exc)
                return

    def received(self, env: Any, holder: tuple[str | None, int] | None) -> None:
        """A state from a peer; ``holder`` is who this machine's lease view says holds
        (None: this machine itself)."""
        if holder is None or (env.sender, env.epoch) != holder:
            self.counters.inc("pool.refused.not_holder")
            return
        try:
            state = open_state(env)
        except PoolRefused as exc:  # from_json refuses anything else it meets
            self.counters.inc("pool.refused.malformed")
            log.warning("pool: a state from %s refused: %.300s", env.sender, exc.detail)
            return
        if self.keep(state):
            self.counters.inc("pool.kept")
