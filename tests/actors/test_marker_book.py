"""MarkerBook on the holder, step by step with a recording wire: received markers for
the cursor (capped, oldest first), a standby the store may name that is not in the
roster yet, and which acks free a reply or the cursor."""

from __future__ import annotations

import nacl.signing

from baton.actors.indexed_ledger import IndexedLedger
from baton.actors.marker_book import SECURE_IN_FLIGHT, MarkerBook
from baton.core.identity import derive_machine_id
from baton.core.inbound import InboundMessage
from baton.core.ledger import LedgerEntry
from baton.core.replicas import STALL_TIMEOUTS, marker_id
from baton.gate import LeaseView
from baton.metrics import Counters
from baton.signing import Ed25519Signer, verify_ed25519
from baton.stores.ledger_memory import MemoryLedger
from baton.wire.envelope import Envelope, make_envelope
from baton.wire.marker_transport import ReplyMarkerTransport

B, ME = "m_bbbbbbbbbbbbbbbb", "m_aaaaaaaaaaaaaaaa"


def book_with_ledger() -> tuple[MarkerBook, list[Envelope], IndexedLedger]:
    key = nacl.signing.SigningKey(bytes([7]) * 32)
    me = derive_machine_id(bytes(key.verify_key))
    wire: list[Envelope] = []
    transport = ReplyMarkerTransport(
        me, Ed25519Signer(me, key), lambda env: wire.append(env) or True
    )
    ledger = IndexedLedger(MemoryLedger())
    book = MarkerBook(me, transport, ledger, verify_ed25519, Counters(), 2000.0, lambda s: None)
    return book, wire, ledger


def record(ledger: IndexedLedger, n: int) -> list[LedgerEntry]:
    msgs = [InboundMessage("memory", 10 + i, 1, 1 + i % 3, 100 + i, f"m{i}", "u") for i in range(n)]
    return [ledger.record(m, 0.0)[0] for m in msgs]


def ack(sender: str, mid: str) -> Envelope:
    return make_envelope("marker_ack", sender, ME, {"id": mid}, "a" * 16)


def test_a_standby_the_store_names_before_the_roster_arrives_still_owes_its_acks() -> None:
    book, wire, ledger = book_with_ledger()
    book.replicas.named_are((B,))  # the lease names b; MembersChanged has not come yet
    [entry] = record(ledger, 1)
    book.secure([entry], 1, 0.0)
    assert [env.to for env in wire] == [B]  # pushed (the wire may not reach it yet)
    assert book.secured([entry]) == frozenset()  # b owes it: the cursor stays
    mid = marker_id("received", entry.key, None)
    assert book.acked(ack(B, mid), 0.0) == entry.key
    assert book.secured([entry]) == {entry.key}
    assert book.acked(ack(B, mid), 0.0) is None  # once only


def test_received_markers_go_oldest_first_and_at_most_so_many_unacked() -> None:
    book, wire, ledger = book_with_ledger()
    book.replicas.named_are((B,))
    entries = record(ledger, SECURE_IN_FLIGHT + 20)
    book.secure(list(reversed(entries)), 1, 0.0)
    told = [env.body["marker"]["key"] for env in wire]
    assert told == [e.key for e in entries[:SECURE_IN_FLIGHT]]
    book.secure(entries, 1, 1.0)
    assert len(wire) == SECURE_IN_FLIGHT  # no room until some are acked
    for key in told[:5]:
        book.acked(ack(B, marker_id("received", key, None)), 0.0)
    book.secure(entries, 1, 2.0)
    assert [env.body["marker"]["key"] for env in wire[SECURE_IN_FLIGHT:]] == [
        e.key for e in entries[SECURE_IN_FLIGHT : SECURE_IN_FLIGHT + 5]
    ]


def test_with_standbys_but_none_in_sync_nothing_is_secured() -> None:
    book, _, ledger = book_with_ledger()
    [entry] = record(ledger, 1)
    book.secure([entry], 1, 0.0)  # nobody waited on: told to no one
    assert book.secured([entry]) == {entry.key}  # a lone machine: its ledger suffices
    book.peers = (object(),)  # type: ignore[assignment]  # a standby, out of sync
    assert book.secured([entry]) == frozenset()


def test_a_joiner_that_stalls_is_dropped_counted_and_backs_off_at_most_four_timeouts() -> None:
    book, _, _ = book_with_ledger()
    view = LeaseView(book.me, 1, float("inf"), ())
    delays = []
    now = 0.0
    for _ in range(5):
        book.replicas.join(B, now)
        book.replicas.sent(B, "p", "k1", "prepared", now)
        book.holder_tick(view, now + STALL_TIMEOUTS * 2000.0 - 1)
        assert B in book.replicas.joiners  # not yet: it may still ack
        now += STALL_TIMEOUTS * 2000.0
        book.holder_tick(view, now)
        assert B not in book.replicas.wait_set
        until, delay = book.backoff[B]
        assert until == now + delay
        delays.append(delay)
    assert delays == [2000.0, 4000.0, 8000.0, 8000.0, 8000.0]  # capped at 4 timeouts
    assert book.counters.get("sync.dropped") == 5 and book.counters.get("sync.removed") == 0
    book.replicas.named_are((B,))  # in sync at last: the back-off is forgotten
    book.holder_tick(LeaseView(book.me, 1, float("inf"), (B,)), now)
    assert B not in book.backoff
