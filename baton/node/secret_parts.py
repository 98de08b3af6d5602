"""The secrets' part of a node (SecretSync): the SecretSyncActor over this machine's
SecretStore, which keeps every member's secrets alike and rotates the master key when
a machine is removed. The node composes it (baton.node.root); a change to a secret the
agent is given restarts the agent's workers with it (``on_change``).
"""

from __future__ import annotations

from collections.abc import Callable

from baton.actors.secret_sync_actor import ROUTES, SecretSyncActor
from baton.adapters.metrics import Counters
from baton.core.clock import Clock
from baton.node.actor_part import ActorPart
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity
from baton.stores.registry_store import JsonRegistryStore
from baton.stores.secret_keys import system_keychain
from baton.stores.secret_store import SecretStore
from baton.wire.envelope import Envelope
from baton.wire.secret_transport import SecretTransport


def removed_machines(paths: HomePaths) -> list[str]:
    """The machines the registry shows removed."""
    loaded = JsonRegistryStore(paths.registry).load()
    entries = [] if loaded is None else loaded.entries.values()
    return [e.machine_id for e in entries if e.revoked_at is not None]


def build_secret_sync(
    *,
    paths: HomePaths,
    identity: MachineIdentity,
    clock: Clock,
    counters: Counters,
    send: Callable[[Envelope], bool],
    on_change: Callable[[set[str]], None],
    enabled: Callable[[], bool] = lambda: True,
) -> ActorPart:
    actor = SecretSyncActor.start(
        SecretStore(paths, identity.machine_id, system_keychain()),
        transport=SecretTransport(identity.machine_id, send),
        key=identity.encryption_key,
        removed=lambda: removed_machines(paths),
        clock=clock,
        counters=counters,
        on_change=on_change,
        enabled=enabled,
    )
    return ActorPart(actor, ROUTES)
