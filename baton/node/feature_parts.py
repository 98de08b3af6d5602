"""The component flags' part of the node (baton.actors.features_actor): the gate the
components read and the actor that keeps and replicates the flags."""

from __future__ import annotations

import os
from collections.abc import Callable

from baton.actors.features_actor import ROUTES, FeatureGate, FeaturesActor
from baton.adapters.metrics import Counters
from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.node.actor_part import ActorPart
from baton.stores.features_file import FeatureFlagsFile
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity
from baton.wire.envelope import Envelope


def build_features(
    *,
    paths: HomePaths,
    identity: MachineIdentity,
    counters: Counters,
    send: Callable[[Envelope], bool],
) -> tuple[ActorPart, FeatureGate]:
    gate = FeatureGate()
    actor = FeaturesActor.start(
        identity.machine_id,
        store=FeatureFlagsFile(paths.features),
        gate=gate,
        send=send,
        signer=Ed25519Signer(identity.machine_id, identity.signing_key),
        verify=verify_ed25519,
        counters=counters,
        rng=os.urandom,
    )
    return ActorPart(actor, ROUTES), gate
