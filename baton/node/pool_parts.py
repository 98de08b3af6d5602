"""The pool's part of a node: the PoolActor over this machine's TopicPlacementPinStore
(``data/pool.sqlite``). Only a mesh with a lease store has one (the pool needs a holder).
A pool file that cannot be opened (not ours, say) leaves the node running without the
pool, said in the log and counted (``pool.unavailable``); the file is left untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from baton.actors.pool_actor import ROUTES, PoolActor
from baton.actors.pool_messages import PoolConfig
from baton.adapters.metrics import Counters
from baton.core.clock import Clock
from baton.core.errors import PoolError
from baton.core.settings import Settings
from baton.node.actor_part import ActorPart
from baton.node.delivery_parts import DeliveryParts
from baton.node.state_parts import StateParts
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity
from baton.stores.pool_sqlite import SqlitePoolStore
from baton.wire.envelope import Envelope
from baton.wire.pool_transport import PoolTransport

log = logging.getLogger("baton.pool")


def build_pool(
    settings: Settings,
    *,
    paths: HomePaths,
    identity: MachineIdentity,
    clock: Clock,
    counters: Counters,
    send: Callable[[Envelope], bool],
    delivery: DeliveryParts | None,
    state: StateParts | None = None,
) -> ActorPart | None:
    try:
        store = SqlitePoolStore(paths.pool)
    except PoolError as exc:
        counters.inc("pool.unavailable")
        log.error("the pool is not running: %s", exc.detail)
        return None
    me = identity.machine_id
    actor = PoolActor.start(
        me,
        store=store,
        transport=PoolTransport(me, send, budget=settings.max_frame_bytes // 2),
        counters=counters,
        clock=clock,
        nickname=identity.public.nickname,
        key=identity.encryption_key,
        config=PoolConfig(ttl_ms=settings.lease_ttl_ms, run_timeout_ms=run_timeout_ms(settings)),
        jobs=None if delivery is None else delivery.jobs,
        delivery=None if delivery is None else delivery.actor.tell,
        state=None if state is None else state.actor.tell,  # a topic's state follows it
    )
    if delivery is not None:
        delivery.route.pool = actor  # delivery's agent runs go through the pool
    return ActorPart(actor, ROUTES)


def run_timeout_ms(settings: Settings) -> int:
    """How long the holder waits on a run placed on a machine before it takes it back:
    the agent's own timeout, and a lease ttl for the way there and back and a slow
    start (the run is then run again elsewhere, its reply still sent once)."""
    return settings.agent_timeout_ms + max(settings.lease_ttl_ms, 5000)
