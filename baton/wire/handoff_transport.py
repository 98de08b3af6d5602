"""HandoffWireTransport: the point-to-point begin / ack / abort channel of a planned
handoff, the same on both ends (the target asks and acks; the holder begins; either
aborts). The epoch travels in the envelope.

- "handoff_request" ``{handoff_id}``: the target asks the holder to begin.
- "handoff_begin" ``{handoff_id, heads, position}``: heads as ``[[topic, seq, key], ...]``.
- "handoff_ack" ``{handoff_id, heads, position, signature}``: the signature is the
  target's Ed25519 signature (hex) over the canonical JSON of the ack's fields with its
  sender, recipient and epoch, after a context prefix, so an ack cannot be forged by a
  third party nor replayed for another handoff, holder or epoch.
- "handoff_abort" ``{handoff_id, reason}``.

Opening is strict: a malformed body raises HandoffRefused (counted and dropped by the
receiver). ``ack_signed`` says whether an ack verifies with the sender's key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from baton.core.errors import HandoffRefused
from baton.core.handoff import Heads
from baton.core.live_tail import MAX_KEY, MAX_TOPIC
from baton.core.registry import Signer, Verify
from baton.wire.envelope import Envelope, make_envelope, new_message_id

CONTEXT = b"baton-handoff-ack-v1\n"
HANDOFF_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
MAX_HEADS = 4096
MAX_REASON = 500


def ack_bytes(env_from: str, env_to: str, epoch: int, hid: str, *, heads: Heads, pos: int) -> bytes:
    doc = {
        "from": env_from,
        "to": env_to,
        "epoch": epoch,
        "handoff_id": hid,
        "heads": [list(h) for h in heads],
        "position": pos,
    }
    return CONTEXT + json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class HandoffWireTransport:
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

    def _send(self, type_: str, to: str, epoch: int, body: dict[str, Any]) -> bool:
        return self.send(
            make_envelope(type_, self.me, to, body, new_message_id(self.rng), epoch=epoch)
        )

    def request(self, to: str, handoff_id: str) -> bool:
        return self._send("handoff_request", to, 0, {"handoff_id": handoff_id})

    def begin(self, to: str, handoff_id: str, epoch: int, heads: Heads, position: int) -> bool:
        body = {"handoff_id": handoff_id, "heads": [list(h) for h in heads], "position": position}
        return self._send("handoff_begin", to, epoch, body)

    def ack(self, to: str, handoff_id: str, epoch: int, heads: Heads, position: int) -> bool:
        signed = ack_bytes(self.me, to, epoch, handoff_id, heads=heads, pos=position)
        body = {
            "handoff_id": handoff_id,
            "heads": [list(h) for h in heads],
            "position": position,
            "signature": self.signer.sign(signed).hex(),
        }
        return self._send("handoff_ack", to, epoch, body)

    def abort(self, to: str, handoff_id: str, reason: str) -> bool:
        body = {"handoff_id": handoff_id, "reason": reason[:MAX_REASON]}
        return self._send("handoff_abort", to, 0, body)


def handoff_id_of(env: Envelope) -> str:
    hid = env.body["handoff_id"]
    if not HANDOFF_ID.fullmatch(hid):
        raise HandoffRefused(f"{env.type}: a malformed handoff id")
    return str(hid)


def open_heads(env: Envelope) -> tuple[Heads, int]:
    """The heads and position of a begin or an ack, or HandoffRefused."""
    raw, position = env.body["heads"], env.body["position"]
    if len(raw) > MAX_HEADS or position < 0:
        raise HandoffRefused(f"{env.type}: too many heads or a negative position")
    heads = []
    for item in raw:
        ok = isinstance(item, list) and len(item) == 3
        topic, seq, key = item if ok else ("", 0, "")
        if not (
            ok
            and isinstance(topic, str)
            and 0 < len(topic) <= MAX_TOPIC
            and isinstance(seq, int)
            and not isinstance(seq, bool)
            and seq >= 1
            and isinstance(key, str)
            and 0 < len(key) <= MAX_KEY
        ):
            raise HandoffRefused(f"{env.type}: a head is not [topic, seq, key]")
        heads.append((topic, seq, key))
    if [h[0] for h in heads] != sorted({h[0] for h in heads}):
        raise HandoffRefused(f"{env.type}: heads are not one per topic, sorted")
    return tuple(heads), position


def ack_signed(env: Envelope, members: Mapping[str, bytes], verify: Verify) -> bool:
    """Does this ack verify with the key of its sender, an active member?"""
    public = members.get(env.sender)
    try:
        raw = bytes.fromhex(env.body["signature"])
        heads, position = open_heads(env)
        signed = ack_bytes(
            env.sender, env.to, env.epoch, handoff_id_of(env), heads=heads, pos=position
        )
    except (ValueError, HandoffRefused):
        return False
    return public is not None and verify(public, signed, raw)
