"""Message kinds in the core values: InboundMessage, the ledger entry's stored form
(documents written before kinds read as text) and the reply marker (a text message's
marker is the JSON, and signs the bytes, of the version before kinds)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import nacl.signing
import pytest

from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.core.errors import LedgerCorrupt, MarkerRefused
from baton.core.inbound import MESSAGE_KINDS, InboundMessage
from baton.core.ledger import LedgerEntry, ReplyMarker, begin, commit, prepare
from baton.wire.marker_transport import marker_bytes

MSG = InboundMessage("memory", 5, 1, 0, 7, "my cat", "ann", "photo")

# A ledger entry as the version before kinds stored it (no "kind").
OLD_ENTRY: dict[str, Any] = {
    "key": "memory:1/0:7",
    "channel": "memory",
    "topic": "1/0",
    "chat_id": 1,
    "thread_id": 0,
    "message_id": 7,
    "update_id": 5,
    "text": "hello",
    "sender": "ann",
    "state": "reply-prepared",
    "attempts": 1,
    "last_error": None,
    "replies": [
        {
            "index": 0,
            "text": "echo: hello",
            "reply_key": "a" * 64,
            "committed": False,
            "message_id": None,
            "epoch": None,
        }
    ],
    "prepared_epoch": 3,
    "received_ms": 1.0,
    "updated_ms": 2.0,
}

# A committed marker as the version before kinds wrote it (no "message_kind").
OLD_MARKER: dict[str, Any] = {
    "kind": "committed",
    "key": "memory:1/0:7",
    "channel": "memory",
    "topic": "1/0",
    "chat_id": 1,
    "thread_id": 0,
    "message_id": 7,
    "update_id": 5,
    "text": "hello",
    "sender": "ann",
    "epoch": 3,
    "replies": ["a", "b"],
    "index": 1,
    "sent_message_id": 42,
}


def test_every_kind_is_a_message_and_an_unknown_one_is_misuse() -> None:
    assert InboundMessage("memory", 1, 1, 0, 1, "hi", "ann").kind == "text"
    for kind in MESSAGE_KINDS:
        assert InboundMessage("memory", 1, 1, 0, 1, "", "ann", kind).kind == kind
    with pytest.raises(ValueError, match="kind"):
        InboundMessage("memory", 1, 1, 0, 1, "", "ann", "gif")


# --- the ledger entry ------------------------------------------------------------------


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_an_entry_keeps_its_kind_through_the_lifecycle_and_its_json_form(kind: str) -> None:
    entry = LedgerEntry.of(replace(MSG, kind=kind), 1.0)
    assert entry.kind == kind
    entry = commit(prepare(begin(entry, 2.0), ["r"], 3, 3.0), 0, 9, 3, 4.0)
    assert entry.kind == kind
    doc = json.loads(json.dumps(entry.to_json()))
    assert doc["kind"] == kind
    assert LedgerEntry.from_json(doc) == entry


def test_an_entry_stored_before_kinds_reads_as_text() -> None:
    entry = LedgerEntry.from_json(json.loads(json.dumps(OLD_ENTRY)))
    assert (entry.kind, entry.text, entry.replies[0].text) == ("text", "hello", "echo: hello")
    assert entry.to_json() == {**OLD_ENTRY, "kind": "text"}  # rewritten with its kind


@pytest.mark.parametrize("kind", ["gif", "", None, 1, ["photo"], "Photo"])
def test_an_entry_of_an_unknown_kind_is_corrupt(kind: object) -> None:
    with pytest.raises(LedgerCorrupt):
        LedgerEntry.from_json({**OLD_ENTRY, "kind": kind})


def test_the_rest_of_an_old_entry_is_still_decoded_strictly() -> None:
    with pytest.raises(LedgerCorrupt):
        LedgerEntry.from_json({k: v for k, v in OLD_ENTRY.items() if k != "sender"})
    with pytest.raises(LedgerCorrupt):
        LedgerEntry.from_json({**OLD_ENTRY, "extra": 1})
    with pytest.raises(LedgerCorrupt):
        LedgerEntry.from_json({**OLD_ENTRY, "attempts": True})


# --- the marker --------------------------------------------------------------------------


def test_a_marker_without_message_kind_is_a_text_messages_and_keeps_its_json() -> None:
    marker = ReplyMarker.from_json(dict(OLD_MARKER))
    assert (marker.message_kind, marker.kind, marker.index) == ("text", "committed", 1)
    assert marker.to_json() == OLD_MARKER
    assert "message_kind" not in marker.to_json()


def test_an_older_versions_signature_verifies_the_same_bytes() -> None:
    """A marker signed by a peer before kinds, decoded and encoded again here, signs the
    same canonical bytes (and the other way round)."""
    key = nacl.signing.SigningKey(bytes([7]) * 32)
    signer = Ed25519Signer("m_old", key)
    signature = signer.sign(marker_bytes(OLD_MARKER))
    again = ReplyMarker.from_json(json.loads(json.dumps(OLD_MARKER))).to_json()
    assert marker_bytes(again) == marker_bytes(OLD_MARKER)
    assert verify_ed25519(bytes(key.verify_key), marker_bytes(again), signature)
    assert b"message_kind" not in marker_bytes(again)


@pytest.mark.parametrize("kind", [k for k in MESSAGE_KINDS if k != "text"])
def test_a_marker_of_another_kind_carries_it_and_signs_it(kind: str) -> None:
    marker = replace(ReplyMarker.from_json(dict(OLD_MARKER)), message_kind=kind)
    doc = json.loads(json.dumps(marker.to_json()))
    assert doc == {**OLD_MARKER, "message_kind": kind}
    assert ReplyMarker.from_json(doc) == marker
    key = nacl.signing.SigningKey(bytes([8]) * 32)
    signature = Ed25519Signer("m_new", key).sign(marker_bytes(doc))
    relabelled = {**doc, "message_kind": "text"}
    assert not verify_ed25519(bytes(key.verify_key), marker_bytes(relabelled), signature)


def test_an_explicit_text_kind_is_accepted() -> None:
    marker = ReplyMarker.from_json({**OLD_MARKER, "message_kind": "text"})
    assert marker == ReplyMarker.from_json(dict(OLD_MARKER))


@pytest.mark.parametrize("kind", ["gif", "", None, 1, True, ["photo"], {"k": 1}])
def test_a_marker_of_an_unknown_kind_is_refused(kind: object) -> None:
    with pytest.raises(MarkerRefused, match="message_kind"):
        ReplyMarker.from_json({**OLD_MARKER, "message_kind": kind})
    with pytest.raises(MarkerRefused, match="message_kind"):
        replace(ReplyMarker.from_json(dict(OLD_MARKER)), message_kind=kind)


def test_the_rest_of_a_marker_is_still_decoded_strictly() -> None:
    with pytest.raises(MarkerRefused, match="missing"):
        ReplyMarker.from_json({k: v for k, v in OLD_MARKER.items() if k != "index"})
    with pytest.raises(MarkerRefused, match="unknown"):
        ReplyMarker.from_json({**OLD_MARKER, "kind_of_message": "photo"})
