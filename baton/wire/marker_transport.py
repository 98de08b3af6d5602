"""ReplyMarkerTransport: received, reply-prepared and reply-committed markers to the
standbys, and user messages a standby forwards to the holder.

A "marker" envelope is ``{marker, signature}``: the marker as ReplyMarker.to_json() and
the sender's Ed25519 signature (hex) over its canonical JSON with a context prefix, so a
marker stays attributable however it travels. ``open_marker`` is strict: it returns a
ReplyMarker signed by the envelope's sender, who must be an active member, or raises
MarkerRefused (counted and dropped by the receiver). The wire already admits only active
members' keys; the signature also covers a member revoked since the frame was sent.

"marker_ack" ``{id}`` goes back from a standby once it has durably recorded the marker
(``core.replicas.marker_id``); "sync_request" ``{keys, page, more}`` from a standby out
of the in-sync set to the holder, naming the ledger keys it holds unfinished, in pages
of at most MAX_SYNC_KEYS numbered from 0 (``more``: further pages follow), to join it.
``open_ack`` and ``open_sync_request`` are strict.

"user_message" ``{item_id, topic, text}`` goes from a standby to the holder, which posts
it to the channel (idempotent on item_id) and answers "user_message_ack"
``{item_id, message_id}``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from baton.core.errors import MarkerRefused
from baton.core.ledger import ReplyMarker
from baton.core.registry import Signer, Verify
from baton.wire.envelope import Envelope, make_envelope, new_message_id

CONTEXT = b"baton-reply-marker-v1\n"
ITEM_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
TOPIC = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_FORWARD_TEXT = 64 * 1024
MAX_SYNC_KEYS = 1000
MARKER_ID = re.compile(r"(received|prepared|committed):(-1|[0-9]{1,3}):[^\s]{1,300}")


def marker_bytes(marker: dict[str, Any]) -> bytes:
    canonical = json.dumps(marker, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return CONTEXT + canonical.encode("utf-8", "surrogatepass")


class ReplyMarkerTransport:
    def __init__(
        self,
        me: str,
        signer: Signer,
        send: Callable[[Envelope], bool],
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.me = me
        self.signer = signer
        self.send = send
        self.rng = rng

    def _envelope(self, type_: str, to: str, body: dict[str, Any]) -> Envelope:
        return make_envelope(type_, self.me, to, body, new_message_id(self.rng))

    def push(self, to: str, marker: ReplyMarker) -> bool:
        """Send ``marker`` to machine ``to``; False if the wire could not take it now."""
        body = marker.to_json()
        signature = self.signer.sign(marker_bytes(body)).hex()
        return self.send(self._envelope("marker", to, {"marker": body, "signature": signature}))

    def ack_marker(self, to: str, marker_id: str) -> bool:
        return self.send(self._envelope("marker_ack", to, {"id": marker_id}))

    def request_sync(self, to: str, keys: list[str]) -> bool:
        """Every key, in pages of at most MAX_SYNC_KEYS (an empty list: one empty page)."""
        pages = [keys[i : i + MAX_SYNC_KEYS] for i in range(0, len(keys), MAX_SYNC_KEYS)]
        pages = pages or [[]]
        sent = True
        for n, page in enumerate(pages):
            body = {"keys": page, "page": n, "more": n < len(pages) - 1}
            sent = self.send(self._envelope("sync_request", to, body)) and sent
        return sent

    def forward(self, to: str, item_id: str, topic: str, text: str) -> bool:
        body = {"item_id": item_id, "topic": topic, "text": text}
        return self.send(self._envelope("user_message", to, body))

    def ack(self, to: str, item_id: str, message_id: int) -> bool:
        body = {"item_id": item_id, "message_id": message_id}
        return self.send(self._envelope("user_message_ack", to, body))


def open_marker(env: Envelope, members: Mapping[str, bytes], verify: Verify) -> ReplyMarker:
    """The marker in ``env``, signed by its sender, an active member; or MarkerRefused."""
    public = members.get(env.sender)
    if public is None:
        raise MarkerRefused(f"marker from {env.sender}, who is not an active member")
    body, signature = env.body["marker"], env.body["signature"]
    try:
        raw = bytes.fromhex(signature)
    except ValueError:
        raise MarkerRefused("signature: not hex") from None
    try:
        signed = marker_bytes(dict(body))
    except (TypeError, ValueError):
        raise MarkerRefused("marker: not JSON-encodable") from None
    if not verify(public, signed, raw):
        raise MarkerRefused(f"marker from {env.sender}: bad signature")
    return ReplyMarker.from_json(dict(body))


def open_forward(env: Envelope) -> tuple[str, str, str]:
    """(item_id, topic, text) of a "user_message" envelope, or MarkerRefused."""
    item_id, topic, text = env.body["item_id"], env.body["topic"], env.body["text"]
    if not ITEM_ID.fullmatch(item_id) or not TOPIC.fullmatch(topic):
        raise MarkerRefused("user_message: bad item_id or topic")
    if not text or len(text.encode("utf-8", "replace")) > MAX_FORWARD_TEXT:
        raise MarkerRefused("user_message: text empty or too large")
    return item_id, topic, text


def open_ack(env: Envelope) -> str:
    """The marker id a "marker_ack" names, or MarkerRefused."""
    marker_id = env.body["id"]
    if not MARKER_ID.fullmatch(marker_id):
        raise MarkerRefused("marker_ack: not a marker id")
    return str(marker_id)


def open_sync_request(env: Envelope) -> tuple[list[str], int, bool]:
    """(the ledger keys a "sync_request" page names, its number, whether more pages
    follow), or MarkerRefused."""
    keys, page = env.body["keys"], env.body["page"]
    if not 0 <= page < 10_000:
        raise MarkerRefused("sync_request: page out of range")
    if len(keys) > MAX_SYNC_KEYS or not all(
        isinstance(k, str) and 0 < len(k) <= 300 and k.isprintable() for k in keys
    ):
        raise MarkerRefused(f"sync_request: at most {MAX_SYNC_KEYS} keys of printable text")
    return list(keys), page, bool(env.body["more"])
