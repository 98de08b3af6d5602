"""PoolTransport: the pool's state from the holder to every member (docs/DESIGN.md, "The
pool"), over the CURVE wire: ``pool_state`` {"state": PoolState.to_json()}, stamped with
the holder's lease epoch. Not sealed: pins and placements name topics and machines, no
conversation, and the wire authenticates and encrypts the link.

Invariants: ``open_state`` returns a well-formed PoolState no newer in term than the
envelope's epoch, or raises PoolRefused; ``send_state`` raises ValueError past the
wire's frame limit (the caller counts it).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from baton.core.errors import PoolRefused
from baton.core.pool_state import PoolState
from baton.wire.envelope import Envelope, make_envelope, new_message_id


class PoolTransport:
    def __init__(
        self, me: str, send: Callable[[Envelope], bool], rng: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.me = me
        self.send = send
        self.rng = rng

    def send_state(self, to: str, epoch: int, state: PoolState) -> bool:
        body = {"state": state.to_json()}
        env = make_envelope("pool_state", self.me, to, body, new_message_id(self.rng), epoch=epoch)
        return self.send(env)


def open_state(env: Envelope) -> PoolState:
    state = PoolState.from_json(env.body["state"])
    if state.term > env.epoch:
        raise PoolRefused(f"a state of term {state.term} from the holder of epoch {env.epoch}")
    return state
