"""ActorPart: a part of the node that is one actor, with the envelope kinds the
dispatcher routes to it (the secrets' SecretSyncActor, the pool's PoolActor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pykka


@dataclass
class ActorPart:
    actor: pykka.ActorRef[Any]
    routes: tuple[str, ...]

    def stop(self) -> None:
        self.actor.stop(timeout=10)

    def is_alive(self) -> bool:
        return bool(self.actor.is_alive())
