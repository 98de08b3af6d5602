"""The agent state's part of a node (StateSync): the StateRepo on ``state/`` and the
StateSyncActor that keeps it following the awake role. The node composes it
(baton.node.root).

The remote is ``state_remote``, or by default the lease store's remote when that is a
git one (its own ref, ``refs/baton/state``, beside the lease's). Without a git remote,
or with ``state_remote = "off"``, there is none of this: the state directory stays
this machine's alone, and status says so.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pykka

from baton.actors.state_sync_actor import Flush, StateSyncActor, StateView
from baton.adapters.metrics import Counters
from baton.core.clock import Clock
from baton.core.errors import StateSyncError
from baton.core.settings import Settings
from baton.core.state_trust import SignerWindow, signer_windows
from baton.stores.git_cli import shown
from baton.stores.git_lease import ensure_git_remote, git_url
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity
from baton.stores.registry_store import JsonRegistryStore
from baton.stores.state_repo import StateRepo

log = logging.getLogger("baton.state")

GIT_TIMEOUT_S = 10.0
# a stop waits this long for the last commit and push, not for an unreachable remote's
# deadline: the lease's release comes next, and a supervisor kills a node slow to stop
FLUSH_WAIT_S = 5.0


def state_remote(settings: Settings) -> str | None:
    """The git URL the state syncs through, None when it does not sync."""
    if settings.state_remote == "off":
        return None
    if settings.state_remote:
        return git_url(settings.state_remote)
    if settings.lease_store.startswith("git+"):
        return git_url(settings.lease_store)
    return None


@dataclass
class StateParts:
    actor: pykka.ActorRef[Any]
    view: StateView

    def flush(self) -> None:
        """Commit and push the holder's last changes (before it lets go of the lease)."""
        with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
            self.actor.ask(Flush(), timeout=FLUSH_WAIT_S)

    def stop(self) -> None:
        self.actor.stop(timeout=GIT_TIMEOUT_S + FLUSH_WAIT_S)  # after a git call in flight

    def is_alive(self) -> bool:
        return bool(self.actor.is_alive())


def build_state_sync(
    settings: Settings,
    *,
    paths: HomePaths,
    identity: MachineIdentity,
    clock: Clock,
    counters: Counters,
    enabled: Callable[[], bool] = lambda: True,
) -> StateParts | None:
    remote = state_remote(settings)
    if remote is None:
        return None
    if settings.state_remote:
        ensure_git_remote(settings.state_remote)  # a file:// one is created if missing
    try:
        repo = StateRepo(paths, identity, remote, timeout_s=GIT_TIMEOUT_S)
    except StateSyncError as exc:  # git too old, say: the node runs, its state stays here
        counters.inc("state.unavailable")
        log.error("the agent's state is not synced: %s", exc.detail)
        return None
    registry = JsonRegistryStore(paths.registry)

    def signers() -> Mapping[str, SignerWindow]:
        """Every member the registry knows now, revoked ones with their window closed."""
        loaded = registry.load()
        return {} if loaded is None else signer_windows(loaded.entries.values())

    view = StateView(shown(remote))  # no user or password in status
    actor = StateSyncActor.start(
        repo,
        me=identity.machine_id,
        signers=signers,
        clock=clock,
        counters=counters,
        interval_ms=settings.state_sync_ms,
        view=view,
        enabled=enabled,
    )
    return StateParts(actor, view)
