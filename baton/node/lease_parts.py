"""The lease's part of a node: the store named by ``lease_store``, the worker thread
that talks to it, and the LeaseCoordinatorActor. The node composes them (baton.node.root).

A mesh without a lease store has none of this: `status` says so, and the machine that
founded the mesh stays awake (no automatic failover).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka

from baton.actors.lease_actor import IsReleased, LeaseCoordinatorActor, LeaseListener, Release
from baton.actors.lease_worker import LeaseStoreWorker
from baton.adapters.metrics import Counters
from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.core.clock import Clock
from baton.core.errors import ConfigError
from baton.core.lease import LeaseConfig, Timing
from baton.core.lease_store import LeaseStore
from baton.core.settings import Settings
from baton.holder.gate import LeaseGate
from baton.stores.etcd_lease import EtcdLeaseStore, etcd_endpoint
from baton.stores.git_lease import GitLeaseStore, git_url
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity
from baton.wire.envelope import Envelope

log = logging.getLogger("baton.lease")

RELEASE_WAIT_S = 10.0


def store_timeout_s(settings: Settings) -> float:
    """A store call may take most of a renew interval, and never less than 2 s."""
    return max(2.0, settings.renew_interval_ms * 0.8 / 1000)


def open_lease_store(settings: Settings, paths: HomePaths, clone: Path | None = None) -> LeaseStore:
    """The lease store the settings name; a git one keeps its local clone in ``clone``
    (the node's own by default: another process must pass its own)."""
    where, timeout = settings.lease_store, store_timeout_s(settings)
    if where.startswith("git+"):
        return GitLeaseStore(git_url(where), clone or paths.data_dir / "lease.git", timeout)
    if where.startswith("etcd+"):
        base_url, key = etcd_endpoint(where)
        return EtcdLeaseStore(base_url, key, timeout)
    raise ConfigError("lease_store", f"{where!r}: use git+<git URL> or etcd+http://host:port")


@dataclass
class LeaseParts:
    worker: LeaseStoreWorker
    coordinator: pykka.ActorRef[Any]
    gate: LeaseGate
    released: bool = False

    def is_alive(self) -> bool:
        return self.worker.is_alive() and self.coordinator.is_alive()

    def release(self) -> None:
        """Stop acting and write a tombstone (sent to the peers) if holding; wait for it.
        The node does this first when it stops, while every other part still runs."""
        if self.released:
            return
        self.released = True
        try:
            self.coordinator.tell(Release())
            deadline = time.monotonic() + RELEASE_WAIT_S
            while time.monotonic() < deadline:
                if self.coordinator.ask(IsReleased(), timeout=RELEASE_WAIT_S):
                    break
                time.sleep(0.02)
            else:
                log.warning("lease: the release did not finish in %.0f s", RELEASE_WAIT_S)
        except (pykka.ActorDeadError, pykka.Timeout):
            log.warning("lease: the coordinator was gone before the release")

    def stop(self) -> None:
        self.release()  # once only: a no-op if the node already released
        self.coordinator.stop(timeout=5)
        self.worker.stop()


def build_lease(
    settings: Settings,
    *,
    paths: HomePaths,
    identity: MachineIdentity,
    clock: Clock,
    send: Callable[[Envelope], bool],
    counters: Counters,
    listeners: list[LeaseListener],
) -> LeaseParts | None:
    if not settings.lease_store:
        return None
    worker = LeaseStoreWorker(open_lease_store(settings, paths))
    timing = Timing.of(settings.lease_ttl_ms, settings.renew_interval_ms, settings.clock_rate_error)
    signer = Ed25519Signer(identity.machine_id, identity.signing_key)
    cfg = LeaseConfig(identity.machine_id, timing, signer)
    gate = LeaseGate()
    coordinator = LeaseCoordinatorActor.start(
        cfg,
        signing_public=identity.public.signing_public,
        worker=worker,
        clock=clock,
        send=send,
        verify=verify_ed25519,
        counters=counters,
        listeners=listeners,
        gate=gate,
        sync_all_peers=not settings.channel,  # no channel: no markers to be in sync with
    )
    worker.start()
    log.info("lease: store %s, ttl %d ms", worker.store.describe(), settings.lease_ttl_ms)
    return LeaseParts(worker, coordinator, gate)
