"""Replicas: which standbys hold every marker the holder sent (baton.core.replicas)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from baton.core.replicas import STALL_TIMEOUTS, Replicas, marker_id

ME, B, C = "m_aaaaaaaaaaaaaaaa", "m_bbbbbbbbbbbbbbbb", "m_cccccccccccccccc"
P = marker_id("prepared", "k1", None)


def test_a_reply_waits_for_every_named_standby_to_ack_its_prepared_marker() -> None:
    r = Replicas(ME)
    r.named_are((B, C, ME))
    assert r.wait_set == {B, C}
    for peer in (B, C):
        r.sent(peer, P, "k1", "prepared", 0.0)
    assert r.blocking("k1") == {B, C}
    assert r.acked(B, P, 0.0) and not r.acked(B, P, 0.0)  # the second ack changes nothing
    assert r.blocking("k1") == {C}
    r.acked(C, P, 0.0)
    assert r.blocking("k1") == frozenset()


def test_committed_markers_are_outstanding_but_block_nothing() -> None:
    r = Replicas(ME)
    r.named_are((B,))
    r.sent(B, marker_id("committed", "k1", 0), "k1", "committed", 0.0)
    assert r.blocking("k1") == frozenset() and r.retries(600.0, 500.0)


def test_a_received_marker_holds_the_cursor_but_a_late_one_removes_nobody() -> None:
    r = Replicas(ME)
    r.named_are((B,))
    got = marker_id("received", "k2", None)
    r.sent(B, got, "k2", "received", 0.0)
    r.sent(B, marker_id("committed", "k1", 0), "k1", "committed", 0.0)
    assert r.blocked_keys() == {"k2"} and r.blocking("k2") == {B}
    assert r.overdue(10_000.0, 1000.0) == set()  # slow with it: the cursor waits, no more
    assert r.retries(10_000.0, 500.0)  # it is sent again
    assert r.acked(B, got, 0.0) is not None and r.blocked_keys() == frozenset()
    r.sent(B, P, "k1", "prepared", 10_000.0)
    assert r.overdue(11_000.0, 1000.0) == {B}  # a late prepared ack does remove it


def test_a_laggard_is_waited_on_until_the_store_can_no_longer_name_it() -> None:
    r = Replicas(ME)
    r.named_are((B, C))
    r.sent(B, P, "k1", "prepared", 0.0)
    r.sent(C, P, "k1", "prepared", 0.0)
    r.acked(C, P, 0.0)
    assert r.overdue(999.0, 1000.0) == set()
    assert r.overdue(1000.0, 1000.0) == {B}
    assert r.overdue(2000.0, 1000.0) == set()  # asked once
    assert r.wanted() == (C,)
    assert r.blocking("k1") == {B}  # the store may still name it: keep waiting
    r.named_are((B, C))  # the write has not landed
    assert r.blocking("k1") == {B}
    r.named_are((C,))
    assert r.blocking("k1") == frozenset() and r.wait_set == {C}


def test_a_standby_that_acks_on_is_slow_not_gone_until_its_marker_is_stall_timeouts_old() -> None:
    """A busy standby works off a queue of markers: while it acks something every
    timeout it stays (the reply waits); silent for a timeout, or its prepared marker
    unacked for STALL_TIMEOUTS timeouts, it is removed."""
    r = Replicas(ME)
    r.named_are((B, C))
    for i in range(10):
        for peer in (B, C):
            r.sent(peer, marker_id("received", f"q{i}", None), f"q{i}", "received", 0.0)
    r.sent(B, P, "k1", "prepared", 0.0)
    r.sent(C, P, "k1", "prepared", 0.0)
    for i in range(4):  # B acks one a timeout (less a little); C acks nothing
        r.acked(B, marker_id("received", f"q{i}", None), 900.0 * (i + 1))
        late = r.overdue(900.0 * (i + 1) + 50, 1000.0)
        assert late == ({C} if i == 1 else set()), i  # C: silent since 0, told once
    assert r.blocking("k1") == {B, C}  # the reply still waits on both
    assert r.overdue(STALL_TIMEOUTS * 1000.0, 1000.0) == {B}  # 4 timeouts: too slow
    r2 = Replicas(ME)
    r2.named_are((B,))
    r2.sent(B, P, "k1", "prepared", 0.0)
    r2.sent(B, marker_id("received", "q", None), "q", "received", 0.0)
    r2.acked(B, marker_id("received", "q", None), 500.0)
    assert r2.overdue(1499.0, 1000.0) == set() and r2.overdue(1500.0, 1000.0) == {B}


def test_a_joiner_is_waited_on_at_once_and_named_once_it_acked_everything() -> None:
    r = Replicas(ME)
    assert r.join(B, 0.0) and not r.join(ME, 0.0)
    assert r.wait_set == {B}
    r.sent(B, P, "k1", "prepared", 0.0)
    assert r.wanted() == ()  # it owes a marker
    r.acked(B, P, 0.0)
    assert r.wanted() == (B,)
    r.named_are((B,))
    assert r.joiners == {} and r.wait_set == {B}
    assert not r.join(B, 5.0)  # in already


def test_a_joiner_is_paced_by_its_acks_and_dropped_once_it_stalls() -> None:
    r = Replicas(ME)
    r.join(B, 0.0)
    for n in range(10):  # a long catch-up, all sent at once
        r.sent(B, f"m{n}", f"k{n}", "prepared", 0.0)
    t = 0.0
    for n in range(9):  # acked slowly, one every 3 timeouts: 27 s in all
        t += 3000.0
        r.acked(B, f"m{n}", t)
        assert r.overdue(t + 2999.0, 1000.0) == set() and B in r.wait_set, n
    assert r.overdue(t + STALL_TIMEOUTS * 1000.0 - 1, 1000.0) == set() and B in r.joiners
    # then it acks nothing more: not named, so dropped at once (nothing to write)
    assert r.overdue(t + STALL_TIMEOUTS * 1000.0, 1000.0) == set() and r.late == {B}
    assert r.wait_set == frozenset() and r.blocking("k9") == frozenset()


def test_a_joiner_that_owes_nothing_is_not_counted_stalled() -> None:
    r = Replicas(ME)
    r.join(B, 0.0)
    assert r.overdue(50_000.0, 1000.0) == set()  # nothing to do: its clock does not run
    r.sent(B, P, "k1", "prepared", 50_000.0)
    assert r.overdue(50_050.0, 1000.0) == set() and B in r.joiners
    assert r.overdue(50_000.0 + STALL_TIMEOUTS * 1000.0, 1000.0) == set() and B not in r.joiners


def test_a_joiner_whose_addition_may_land_is_removed_through_the_store() -> None:
    r = Replicas(ME)
    r.join(B, 0.0)
    r.named_are((B,))  # its addition is in flight: the store may name it
    r.sent(B, P, "k1", "prepared", 10.0)
    assert r.overdue(1010.0, 1000.0) == {B} and r.blocking("k1") == {B}
    assert r.wanted() == ()
    r.named_are(())
    assert r.blocking("k1") == frozenset()


def test_a_revoked_member_leaves() -> None:
    r = Replicas(ME)
    r.named_are((B,))
    r.join(C, 0.0)
    r.sent(C, P, "k1", "prepared", 0.0)
    r.leave(C)
    r.leave(B)
    assert r.blocking("k1") == frozenset() and r.wanted() == ()


def test_a_new_term_forgets_everything_outstanding() -> None:
    r = Replicas(ME)
    r.named_are((B,))
    r.sent(B, P, "k1", "prepared", 0.0)
    r.reset()
    assert r.blocking("k1") == frozenset() and r.wait_set == {B}


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["named", "join", "sent", "ack", "overdue", "leave", "reset"]),
        st.sampled_from([B, C]),
        st.sets(st.sampled_from([B, C])),
    ),
    max_size=40,
)


@given(ACTIONS)
def test_the_wait_set_always_covers_what_the_store_may_name(actions: list) -> None:  # type: ignore[type-arg]
    r = Replicas(ME)
    now = 0.0
    for action, peer, named in actions:
        now += 400.0
        match action:
            case "named":
                r.named_are(named)
            case "join":
                r.join(peer, now)
            case "sent":
                r.sent(peer, P, "k1", "prepared", now)
                r.sent(peer, marker_id("committed", "k2", 0), "k2", "committed", now)
            case "ack":
                r.acked(peer, P, now)
            case "reset":
                r.reset()
            case "overdue":
                r.overdue(now, 1000.0)
            case "leave":
                r.leave(peer)
        assert r.named <= r.bound <= r.wait_set
        assert not set(r.wanted()) & r.removing
        # a joiner named is bound, and owes nothing it was sent before it was bound
        for j in r.wanted():
            if j in r.joiners:
                assert j in r.bound
                assert not any(p == j and not o.bound for (p, _), o in r.outstanding.items())
        assert {p for p, _ in r.outstanding} <= r.wait_set
        # the indexes say what a scan of everything outstanding says
        for key in ("k1", "k2"):
            scan = {p for (p, _), o in r.outstanding.items() if o.key == key and o.blocks}
            assert r.blocking(key) == scan & r.bound
        assert r.owed(P) == any(m == P for _, m in r.outstanding)


def test_a_joiner_holds_up_replies_only_once_the_lease_was_asked_to_name_it() -> None:
    r = Replicas(ME)
    r.join(B, 0.0)
    r.sent(B, P, "k1", "prepared", 0.0)
    assert r.blocking("k1") == frozenset()  # it could not take over yet
    r.acked(B, P, 0.0)
    r.asked_for(r.wanted())
    r.sent(B, marker_id("prepared", "k2", None), "k2", "prepared", 10.0)
    assert r.blocking("k2") == {B}  # the lease may name it any moment: it binds now
    # late, and the store may name it: removed through the lease, not dropped
    assert r.overdue(2010.0, 2000.0) == {B} and r.blocking("k2") == {B}
    assert r.wanted() == ()


def test_a_joiner_whose_keys_are_still_arriving_is_not_ready() -> None:
    r = Replicas(ME)
    r.join(B, 0.0, more=True)
    assert r.wanted() == ()  # owes nothing, but more pages of its keys are to come
    r.join(B, 1.0, more=False)
    assert r.wanted() == (B,)


def test_a_busy_holder_still_gets_its_joiner_in_sync() -> None:
    """Under steady load a joiner always owes the newest marker; once it has acked its
    catch-up it holds replies up, the older markers drain, and it is asked for."""
    r = Replicas(ME)
    r.join(B, 0.0)
    r.sent(B, "catch-up", "k0", "committed", 0.0)
    assert r.blocking("k0") == frozenset() and r.wanted() == ()
    r.sent(B, marker_id("prepared", "k1", None), "k1", "prepared", 5.0)  # load: not bound yet
    r.acked(B, "catch-up", 0.0)
    r.wanted()  # binds it: its catch-up is acked
    assert B in r.bound
    r.sent(B, marker_id("prepared", "k2", None), "k2", "prepared", 6.0)  # bound: k2 waits
    assert r.blocking("k2") == {B} and r.wanted() == ()  # k1 (sent unbound) still owed
    r.acked(B, marker_id("prepared", "k1", None), 0.0)
    assert r.wanted() == (B,)  # k2 is still outstanding, but its reply waits for it
