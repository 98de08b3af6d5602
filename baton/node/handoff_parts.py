"""The handoff's part of a node: the HandoffActor and what it needs (the wire, the lease,
the live tail, delivery and its channel position). The node composes it.

Without a lease store the actor still answers `baton wakeup` (the role cannot move:
refused); without a channel there is no tail or delivery to wait for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pykka

from baton.actors.handoff_actor import HandoffActor
from baton.adapters.metrics import Counters
from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.core.clock import Clock
from baton.core.handoff_receiver import ReceiverTiming
from baton.core.settings import Settings
from baton.holder.gate import LeaseGate
from baton.node.delivery_parts import DeliveryParts
from baton.node.lease_parts import LeaseParts
from baton.stores.identity_store import MachineIdentity
from baton.wire.envelope import Envelope
from baton.wire.handoff_transport import HandoffWireTransport

ROUTES = ("handoff_request", "handoff_begin", "handoff_ack", "handoff_abort")


def build_handoff(
    settings: Settings,
    *,
    identity: MachineIdentity,
    send: Callable[[Envelope], bool],
    lease: LeaseParts | None,
    delivery: DeliveryParts | None,
    clock: Clock,
    counters: Counters,
) -> pykka.ActorRef[Any]:
    me = identity.machine_id
    position: Callable[[], int] = lambda: 0  # noqa: E731
    if delivery is not None:
        cursor = delivery.cursor
        position = lambda: cursor.read()[0] or 0  # noqa: E731 (the channel offset confirmed)
    return HandoffActor.start(
        me,
        timing=ReceiverTiming(settings.handoff_ack_timeout_ms, settings.lease_ttl_ms),
        transport=HandoffWireTransport(me, Ed25519Signer(me, identity.signing_key), send),
        gate=LeaseGate() if lease is None else lease.gate,
        lease=None if lease is None else lease.coordinator,
        tail=None if delivery is None else delivery.tail,
        delivery=None if delivery is None else delivery.actor,
        position=position,
        verify=verify_ed25519,
        clock=clock,
        counters=counters,
    )
