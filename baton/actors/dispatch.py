"""Dispatcher: turns envelopes from the wire into messages for the actor that owns
their type. Runs on the wire I/O thread, so it only ever tells (never waits).
A valid envelope of a type nobody handles yet is counted and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pykka

from baton.actors.messages import EnvelopeReceived
from baton.adapters.metrics import Counters
from baton.wire.envelope import Envelope

log = logging.getLogger("baton.dispatch")


class Dispatcher:
    def __init__(self, routes: Mapping[str, pykka.ActorRef[Any]], counters: Counters) -> None:
        self.routes = dict(routes)
        self.counters = counters

    def route(self, type_: str, ref: pykka.ActorRef[Any]) -> None:
        """Send envelopes of ``type_`` to ``ref`` from now on (for actors started later)."""
        self.routes = {**self.routes, type_: ref}

    def __call__(self, envelope: Envelope) -> None:
        ref = self.routes.get(envelope.type)
        if ref is None:
            self.counters.inc("wire.unhandled")
            log.warning("no handler for %s from %s; dropped", envelope.type, envelope.sender)
            return
        try:
            ref.tell(EnvelopeReceived(envelope))
        except pykka.ActorDeadError:
            self.counters.inc("wire.unhandled")
