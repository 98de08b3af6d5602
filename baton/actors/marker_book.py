"""MarkerBook: the DeliveryActor's reply markers (DESIGN.md section 6, step 3 and 4).

On the holder it tells every active peer a reply-prepared or reply-committed marker
(ReplyMarkerTransport signs it); on a standby it applies what the holder tells: the
marker must be signed by its sender, an active member (``open_marker``), and is applied
to the ledger, which acks an entry once every reply is committed (so retention prunes
standbys' ledgers too). A peer's marker never raises here: what is refused or cannot
be applied is logged and counted. It runs on the DeliveryActor's thread, which owns
the ledger.
"""

from __future__ import annotations

import logging

from baton.actors.indexed_ledger import IndexedLedger
from baton.core.errors import LedgerError, MarkerRefused
from baton.core.ledger import LedgerEntry, LedgerState, MarkerKind, marker_for
from baton.core.registry import MachineEntry, Verify
from baton.metrics import Counters
from baton.wire.envelope import Envelope
from baton.wire.marker_transport import ReplyMarkerTransport, open_marker

log = logging.getLogger("baton.delivery")


class MarkerBook:
    def __init__(
        self,
        transport: ReplyMarkerTransport,
        ledger: IndexedLedger,
        verify: Verify,
        counters: Counters,
    ) -> None:
        self.transport = transport
        self.ledger = ledger
        self.verify = verify
        self.counters = counters
        self.peers: tuple[MachineEntry, ...] = ()

    def tell(self, entry: LedgerEntry, kind: MarkerKind, epoch: int, index: int | None) -> None:
        """The holder: tell every active peer ``entry``'s marker of ``kind``."""
        try:
            marker = marker_for(entry, kind, max(1, epoch), index)
        except (MarkerRefused, LedgerError) as exc:  # e.g. a text no peer would accept
            self.counters.inc("marker.unbuildable")
            log.error("no %s marker for %s: %s", kind, entry.key, exc.detail)
            return
        for peer in self.peers:
            if not self.transport.push(peer.machine_id, marker):
                self.counters.inc("marker.unsent")

    def apply(self, env: Envelope, holding: bool, wall_ms: float) -> None:
        """A standby (``holding`` False) applies the marker in ``env``."""
        members = {p.machine_id: p.identity.signing_public for p in self.peers}
        try:
            marker = open_marker(env, members, self.verify)
            known = self.ledger.get(marker.key) is not None
            entry = self.ledger.apply_marker(marker, wall_ms)
            if entry.state is LedgerState.COMMITTED and not holding:
                # every reply is delivered: done here too, so retention can prune it
                self.ledger.ack(entry.key, wall_ms)
        except MarkerRefused as exc:
            self.counters.inc("marker.refused")
            log.warning("marker from %s refused: %s", env.sender, exc.detail)
            return
        except LedgerError as exc:
            self.counters.inc("marker.failed")
            log.warning("marker from %s not applied: %s", env.sender, exc.detail)
            return
        self.counters.inc("marker.applied")
        if not known:
            self.counters.inc("marker.unknown_message")
