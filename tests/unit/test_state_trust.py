"""The rules a state commit must pass (baton.core.state_trust), on facts made up here:
each rule refuses what it should, names the commit, and passes what is honest."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from baton.core.errors import CommitAhead, UntrustedCommit
from baton.core.registry import Status, entry_from_card
from baton.core.state_trust import CommitFacts, SignerWindow, judge, signer_windows, ssh_public_key
from tests.signers import identity

A, B = identity("alpha", 1), identity("bravo", 3)
HIGH = 100  # the highest lease epoch known in these tests
WINDOWS = {
    A.machine_id: SignerWindow(A.machine_id, "ssh-ed25519 AAAA", after=100, before=None),
    B.machine_id: SignerWindow(B.machine_id, "ssh-ed25519 BBBB", after=100, before=500),
}


def fact(
    sha: str, *parents: str, at: int = 200, by: str = A.machine_id, epoch: str = "1"
) -> CommitFacts:
    return CommitFacts(sha * 40, tuple(p * 40 for p in parents), at, "G", by, epoch)


def test_an_honest_chain_passes() -> None:
    judge(
        [fact("a"), fact("b", "a", at=201, epoch="2"), fact("c", "b", at=201, epoch="2")],
        {},
        WINDOWS,
        HIGH,
    )


def test_parents_may_be_commits_verified_before() -> None:
    judge([fact("b", "a", at=300)], {"a" * 40: fact("a", at=300)}, WINDOWS, HIGH)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("N", "not signed"),
        ("B", "does not verify"),
        ("U", "not a member's"),
        ("E", "cannot be checked"),
        ("X", "'X'"),
    ],
)
def test_a_commit_without_a_good_signature_is_refused(status: str, words: str) -> None:
    with pytest.raises(UntrustedCommit, match=words) as refused:
        judge([fact("a"), replace(fact("b", "a"), status=status)], {}, WINDOWS, HIGH)
    assert refused.value.sha == "b" * 40


def test_a_signer_the_registry_does_not_know_is_refused() -> None:
    with pytest.raises(UntrustedCommit, match="not a mesh member"):
        judge([fact("a", by="m-stranger")], {}, WINDOWS, HIGH)


@pytest.mark.parametrize(
    ("at", "words"),
    [(99, "before it joined"), (500, "after its removal"), (900, "after its removal")],
)
def test_a_commit_outside_its_signers_window_is_refused(at: int, words: str) -> None:
    with pytest.raises(UntrustedCommit, match=words):
        judge([fact("a", by=B.machine_id, at=at)], {}, WINDOWS, HIGH)


def test_a_removed_machines_commits_from_before_its_removal_stay_good() -> None:
    judge([fact("a", by=B.machine_id, at=499), fact("b", "a", at=600)], {}, WINDOWS, HIGH)


def test_a_commit_dated_before_its_parent_is_refused() -> None:
    """So a removed machine cannot date a commit into its window once a member has
    committed after its removal."""
    with pytest.raises(UntrustedCommit, match="dated before its parent") as refused:
        judge([fact("a", at=600), fact("b", "a", by=B.machine_id, at=499)], {}, WINDOWS, HIGH)
    assert refused.value.sha == "b" * 40


@pytest.mark.parametrize("epoch", ["", "x", "1,2", "-1", "1" * 19, " 3", "\u0663", "3\udcff"])
def test_a_commit_without_exactly_one_epoch_is_refused(epoch: str) -> None:
    with pytest.raises(UntrustedCommit, match="no single Baton-Epoch"):
        judge([fact("a", epoch=epoch)], {}, WINDOWS, HIGH)


def test_a_commit_of_an_older_epoch_than_its_parent_is_refused() -> None:
    with pytest.raises(UntrustedCommit, match="epoch 2 below its parent's 3"):
        judge([fact("a", epoch="3"), fact("b", "a", epoch="2")], {}, WINDOWS, HIGH)


def test_a_parent_that_was_never_verified_is_refused() -> None:
    with pytest.raises(UntrustedCommit, match="never verified"):
        judge([fact("b", "a")], {}, WINDOWS, HIGH)


def test_windows_come_from_the_registry_revoked_members_included() -> None:
    card = {**A.to_dict(), "wire": "tcp://127.0.0.1:1", "http": "http://127.0.0.1:2"}
    member = entry_from_card(card, 100.7)
    gone = replace(
        entry_from_card({**card, **B.to_dict()}, 100.2), status=Status.REVOKED, revoked_at=450.9
    )
    windows = signer_windows([member, gone])
    assert windows[A.machine_id].after == 100 and windows[A.machine_id].before is None
    assert (windows[B.machine_id].after, windows[B.machine_id].before) == (100, 450)
    assert windows[A.machine_id].key == ssh_public_key(A.signing_public)


def test_the_openssh_key_form_holds_the_raw_key() -> None:
    kind, blob = ssh_public_key(A.signing_public).split()
    raw = base64.b64decode(blob)
    assert kind == "ssh-ed25519" and raw.endswith(A.signing_public)
    assert raw[:4] == b"\0\0\0\x0b" and raw[4:15] == b"ssh-ed25519"


def test_a_commit_of_an_epoch_nobody_here_heard_of_is_not_taken_yet() -> None:
    """A removed machine dating a commit into its window with a huge epoch would block
    every honest commit after it (their epochs are lower): it is not taken."""
    with pytest.raises(CommitAhead, match="epoch 101 is above the highest known here"):
        judge([fact("a", epoch="1"), fact("b", "a", epoch="101")], {}, WINDOWS, HIGH)
    judge([fact("a", epoch="100")], {}, WINDOWS, HIGH)
