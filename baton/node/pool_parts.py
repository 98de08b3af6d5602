"""The pool's part of a node: the PoolActor over this machine's TopicPlacementPinStore
(``data/pool.sqlite``). Only a mesh with a lease store has one (the pool needs a holder).
A pool file that cannot be opened (not ours, say) leaves the node running without the
pool, said in the log and counted (``pool.unavailable``); the file is left untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from baton.actors.pool_actor import ROUTES, PoolActor
from baton.adapters.metrics import Counters
from baton.core.errors import PoolError
from baton.node.actor_part import ActorPart
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity
from baton.stores.pool_sqlite import SqlitePoolStore
from baton.wire.envelope import Envelope
from baton.wire.pool_transport import PoolTransport

log = logging.getLogger("baton.pool")


def build_pool(
    *,
    paths: HomePaths,
    identity: MachineIdentity,
    counters: Counters,
    send: Callable[[Envelope], bool],
) -> ActorPart | None:
    try:
        store = SqlitePoolStore(paths.pool)
    except PoolError as exc:
        counters.inc("pool.unavailable")
        log.error("the pool is not running: %s", exc.detail)
        return None
    me = identity.machine_id
    actor = PoolActor.start(me, store=store, transport=PoolTransport(me, send), counters=counters)
    return ActorPart(actor, ROUTES)
