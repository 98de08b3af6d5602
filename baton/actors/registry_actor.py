"""RegistryActor: the one owner of this machine's MachineRegistry and its store.

It starts from the registry the node opened (baton.core.registry.open_registry),
saves it and announces the active peers. Every change is checked in full
(MachineRegistry.add) before it is saved, and saved before it is announced, so what
peers are admitted on the wire never runs ahead of what is on disk. A refused change
raises to the asker and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pykka

from baton.actors.messages import AddMachine, CheckCard, GetSelf, ListMachines
from baton.core.clock import Clock
from baton.core.errors import InvalidCard
from baton.core.registry import MachineEntry, MachineRegistry, RegistryStore, entry_from_card

log = logging.getLogger("baton.registry")

#: Called with the active peers after every change (and once at start).
PeersListener = Callable[[Sequence[MachineEntry]], None]


class RegistryActor(pykka.ThreadingActor):
    def __init__(
        self,
        registry: MachineRegistry,
        store: RegistryStore,
        clock: Clock,
        listeners: Sequence[PeersListener],
    ) -> None:
        super().__init__()
        self.registry = registry
        self.store = store
        self.clock = clock
        self.listeners = list(listeners)

    def on_start(self) -> None:
        self._commit(self.registry)

    def on_receive(self, message: Any) -> Any:
        match message:
            case ListMachines():
                return self.registry.listing()
            case GetSelf():
                return self.registry.me
            case CheckCard(card=card):
                self._candidate(card)
                return None
            case AddMachine(card=card):
                entry, registry = self._candidate(card)
                self._commit(registry)
                log.info("registry: added %s (%s)", entry.nickname, entry.machine_id)
                return registry.get(entry.machine_id)
        raise TypeError(f"RegistryActor: unexpected message {message!r}")

    def _candidate(self, card: Mapping[str, Any]) -> tuple[MachineEntry, MachineRegistry]:
        entry = entry_from_card(card, self.clock.wall_s())
        if entry.machine_id == self.registry.self_id:
            raise InvalidCard("a machine cannot add itself as a peer")
        return entry, self.registry.add(entry)

    def _commit(self, registry: MachineRegistry) -> None:
        self.store.save(registry)
        self.registry = registry
        peers = registry.active_peers()
        for listener in self.listeners:
            listener(peers)
