"""What the actor tests of a mesh's members share: envelopes carried from one member's
actor to another's through the wire's encoding, and a member's registry entry."""

from __future__ import annotations

from typing import Any, Protocol

import pykka

from baton.actors.messages import EnvelopeReceived
from baton.core.registry import MachineEntry, entry_from_card
from baton.stores.identity_store import MachineIdentity
from baton.wire.envelope import Envelope, decode, encode


class HasActor(Protocol):
    actor: pykka.ActorRef[Any]


class Net:
    """Envelopes from one member's actor to another's, through the wire's encoding (a
    member not in ``members`` is unreachable: the send fails)."""

    def __init__(self) -> None:
        self.members: dict[str, Any] = {}
        self.sent: list[Envelope] = []

    def send(self, env: Envelope) -> bool:
        self.sent.append(env)
        member: HasActor | None = self.members.get(env.to)
        if member is None:
            return False
        member.actor.tell(EnvelopeReceived(decode(encode(env), 1 << 20)))
        return True


def entry_of(identity: MachineIdentity, paired_at: float) -> MachineEntry:
    """``identity``'s registry entry, paired at ``paired_at``, on made-up endpoints."""
    card = {**identity.public.to_dict(), "wire": "tcp://127.0.0.1:1", "http": "http://127.0.0.1:2"}
    return entry_from_card(card, paired_at)
