"""LiveTailTransport: the live tail on the wire. Redaction first, then sealing to the
recipient, then the envelope; and the strict opening of what arrives.

A "tail" envelope (holder -> standby; its epoch is the holder's) carries
``{frames: [[topic, seq, key, prev, box], ...], heads: {topic: seq}}``: ``box`` is the
base64 of the turn's JSON (TranscriptTurn.to_json, secrets redacted) sealed with
PyNaCl's SealedBox to the recipient's X25519 key, so it stays encrypted at rest in the
recipient's LiveTailBuffer; ``heads`` is the holder's last seq of each topic. A
"tail_ack" (standby -> holder) carries ``{have: {topic: [seq, key]}, pull}``: how far
its copy matches (baton.core.live_tail.match_point); ``pull`` asks for the next flush at
once (a handoff's catch-up) instead of at the next interval.

Opening is strict: anything but exactly this shape raises TailRefused (counted and
dropped by the receiver). A box that does not open with this machine's key, or whose
turn is not the one its frame names, is refused the same way at replay.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import nacl.exceptions
import nacl.public

from baton.core import safejson
from baton.core.errors import TailRefused, TranscriptRefused
from baton.core.live_tail import MAX_TOPIC, TailFrame, redact
from baton.core.transcript import TranscriptTurn
from baton.wire.envelope import Envelope, make_envelope, new_message_id

MAX_FRAMES = 256
MAX_TOPICS = 4096
ELIDED = "[elided from the live tail: {} bytes]"


class LiveTailTransport:
    def __init__(
        self,
        me: str,
        send: Callable[[Envelope], bool],
        patterns: Sequence[re.Pattern[str]],
        max_turn_bytes: int,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.me = me
        self.send = send
        self.patterns = tuple(patterns)
        self.max_turn_bytes = max_turn_bytes
        self.rng = rng

    def seal(self, turn: TranscriptTurn, recipient: bytes) -> bytes:
        """The turn, redacted, as JSON sealed to ``recipient`` (an X25519 public key).
        A turn larger than max_turn_bytes travels with its texts elided (its place in
        the chain is what matters to a standby)."""
        clean = replace(
            turn,
            text=redact(turn.text, self.patterns),
            replies=tuple(redact(r, self.patterns) for r in turn.replies),
        )
        raw = _turn_bytes(clean)
        if len(raw) > self.max_turn_bytes:
            clean = replace(
                clean,
                text=ELIDED.format(len(clean.text.encode())),
                replies=tuple(ELIDED.format(len(r.encode())) for r in clean.replies),
            )
            raw = _turn_bytes(clean)
        box = nacl.public.SealedBox(nacl.public.PublicKey(recipient))
        return bytes(box.encrypt(raw))

    def flush(
        self, to: str, epoch: int, frames: Sequence[TailFrame], heads: Mapping[str, int]
    ) -> bool:
        body = {
            "frames": [
                [f.topic, f.seq, f.key, f.prev, base64.b64encode(f.box).decode()] for f in frames
            ],
            "heads": dict(heads),
        }
        return self.send(
            make_envelope("tail", self.me, to, body, new_message_id(self.rng), epoch=epoch)
        )

    def ack(self, to: str, epoch: int, have: Mapping[str, tuple[int, str]], pull: bool) -> bool:
        body = {"have": {t: [s, k] for t, (s, k) in have.items()}, "pull": pull}
        env = make_envelope("tail_ack", self.me, to, body, new_message_id(self.rng), epoch=epoch)
        return self.send(env)


def _turn_bytes(turn: TranscriptTurn) -> bytes:
    return json.dumps(turn.to_json(), separators=(",", ":"), ensure_ascii=False).encode()


def _topic_map(obj: object, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or len(obj) > MAX_TOPICS:
        raise TailRefused(f"{what}: expected an object of at most {MAX_TOPICS} topics")
    for topic in obj:
        if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC:
            raise TailRefused(f"{what}: a topic is not a short string")
    return obj


def _seq(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TailRefused(f"{what}: expected a non-negative integer")
    return value


def open_flush(env: Envelope) -> tuple[list[TailFrame], dict[str, int]]:
    """The frames and heads of a "tail" envelope, or TailRefused."""
    raw_frames = env.body["frames"]
    if len(raw_frames) > MAX_FRAMES:
        raise TailRefused(f"tail: more than {MAX_FRAMES} frames")
    heads = {t: _seq(s, "tail heads") for t, s in _topic_map(env.body["heads"], "heads").items()}
    frames = []
    for item in raw_frames:
        if not isinstance(item, list) or len(item) != 5:
            raise TailRefused("tail: a frame is not [topic, seq, key, prev, box]")
        topic, seq, key, prev, box = item
        if not isinstance(box, str):
            raise TailRefused("tail: box is not base64 text")
        try:
            sealed = base64.b64decode(box, validate=True)
        except (binascii.Error, ValueError):
            raise TailRefused("tail: box is not base64") from None
        frames.append(TailFrame(topic, seq, key, prev, sealed))
    return frames, heads


def open_ack(env: Envelope) -> tuple[dict[str, tuple[int, str]], bool]:
    """The have map and pull flag of a "tail_ack" envelope, or TailRefused."""
    have: dict[str, tuple[int, str]] = {}
    for topic, point in _topic_map(env.body["have"], "have").items():
        if not isinstance(point, list) or len(point) != 2 or not isinstance(point[1], str):
            raise TailRefused("tail_ack: a point is not [seq, key]")
        have[topic] = (_seq(point[0], "tail_ack seq"), point[1])
    return have, env.body["pull"]


def unseal(frame: TailFrame, key: nacl.public.PrivateKey) -> TranscriptTurn:
    """The turn in ``frame``'s box, opened with this machine's key; TailRefused if it
    does not open or is not the turn the frame names."""
    try:
        raw = nacl.public.SealedBox(key).decrypt(frame.box)
    except nacl.exceptions.CryptoError:
        raise TailRefused(f"frame {frame.seq} of {frame.topic!r}: the box does not open") from None
    try:
        turn = TranscriptTurn.from_json(safejson.loads(raw.decode("utf-8")))
    except (ValueError, TranscriptRefused) as exc:
        raise TailRefused(f"frame {frame.seq} of {frame.topic!r}: not a turn: {exc}") from None
    if (turn.topic, turn.seq, turn.ledger_key) != (frame.topic, frame.seq, frame.key):
        raise TailRefused(f"frame {frame.seq} of {frame.topic!r}: the box holds another turn")
    return turn
