"""MarkerBook (baton.core.marker_book) on the holder, step by step: received markers for
the cursor (capped, oldest first), a standby the store may name that is not in the
roster yet, which acks free a reply or the cursor, and a joiner that stalls."""

from __future__ import annotations

from baton.core.delivery_types import Count, Effect, PushMarker
from baton.core.inbound import InboundMessage
from baton.core.ledger import LedgerEntry
from baton.core.ledger_index import LedgerIndex
from baton.core.marker_book import SECURE_IN_FLIGHT, MarkerBook
from baton.core.replicas import STALL_TIMEOUTS, marker_id

B, ME = "m_bbbbbbbbbbbbbbbb", "m_aaaaaaaaaaaaaaaa"


def book_with_ledger() -> tuple[MarkerBook, list[Effect], LedgerIndex]:
    ledger = LedgerIndex()
    return MarkerBook(ME, ledger, 2000.0), [], ledger


def record(ledger: LedgerIndex, n: int) -> list[LedgerEntry]:
    msgs = [InboundMessage("memory", 10 + i, 1, 1 + i % 3, 100 + i, f"m{i}", "u") for i in range(n)]
    return [ledger.keep(LedgerEntry.of(m, 0.0)) for m in msgs]


def pushed(out: list[Effect]) -> list[PushMarker]:
    return [e for e in out if isinstance(e, PushMarker)]


def counted(out: list[Effect], name: str) -> int:
    return sum(e.n for e in out if isinstance(e, Count) and e.name == name)


def test_a_standby_the_store_names_before_the_roster_arrives_still_owes_its_acks() -> None:
    book, out, ledger = book_with_ledger()
    book.replicas.named_are((B,))  # the lease names b; MembersChanged has not come yet
    [entry] = record(ledger, 1)
    book.secure(out, [entry], 1, 0.0)
    assert [p.to for p in pushed(out)] == [B]  # pushed (the wire may not reach it yet)
    assert book.secured([entry]) == frozenset()  # b owes it: the cursor stays
    mid = marker_id("received", entry.key, None)
    assert book.acked(out, B, mid, 0.0) == entry.key
    assert book.secured([entry]) == {entry.key}
    assert book.acked(out, B, mid, 0.0) is None  # once only


def test_received_markers_go_oldest_first_and_at_most_so_many_unacked() -> None:
    book, out, ledger = book_with_ledger()
    book.replicas.named_are((B,))
    entries = record(ledger, SECURE_IN_FLIGHT + 20)
    book.secure(out, list(reversed(entries)), 1, 0.0)
    told = [p.marker.key for p in pushed(out)]
    assert told == [e.key for e in entries[:SECURE_IN_FLIGHT]]
    book.secure(out, entries, 1, 1.0)
    assert len(pushed(out)) == SECURE_IN_FLIGHT  # no room until some are acked
    for key in told[:5]:
        book.acked(out, B, marker_id("received", key, None), 0.0)
    book.secure(out, entries, 1, 2.0)
    assert [p.marker.key for p in pushed(out)[SECURE_IN_FLIGHT:]] == [
        e.key for e in entries[SECURE_IN_FLIGHT : SECURE_IN_FLIGHT + 5]
    ]


def test_with_standbys_but_none_in_sync_nothing_is_secured() -> None:
    book, out, ledger = book_with_ledger()
    [entry] = record(ledger, 1)
    book.secure(out, [entry], 1, 0.0)  # nobody waited on: told to no one
    assert pushed(out) == []
    assert book.secured([entry]) == {entry.key}  # a lone machine: its ledger suffices
    book.members_changed(frozenset({B}))  # a standby, out of sync
    assert book.secured([entry]) == frozenset()


def test_a_joiner_that_stalls_is_dropped_counted_and_backs_off_at_most_four_timeouts() -> None:
    book, out, _ = book_with_ledger()
    delays = []
    now = 0.0
    for _ in range(5):
        book.replicas.join(B, now)
        book.replicas.sent(B, "p", "k1", "prepared", now)
        book.holder_tick(out, (), now + STALL_TIMEOUTS * 2000.0 - 1)
        assert B in book.replicas.joiners  # not yet: it may still ack
        now += STALL_TIMEOUTS * 2000.0
        book.holder_tick(out, (), now)
        assert B not in book.replicas.wait_set
        until, delay = book.backoff[B]
        assert until == now + delay
        delays.append(delay)
    assert delays == [2000.0, 4000.0, 8000.0, 8000.0, 8000.0]  # capped at 4 timeouts
    assert counted(out, "sync.dropped") == 5 and counted(out, "sync.removed") == 0
    book.replicas.named_are((B,))  # in sync at last: the back-off is forgotten
    book.holder_tick(out, (B,), now)
    assert B not in book.backoff
