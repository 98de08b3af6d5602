"""The live tail (sans-IO): how the holder's transcripts reach the standbys
(docs/DESIGN.md, "Live tail and planned handoff").

Theory of operation. Every topic's transcript is a chain of turns 1, 2, 3, ... The
holder streams the chain to each standby as frames ``(topic, seq, key, prev, box)``:
``key`` is the turn's ledger key, ``prev`` the ledger key of turn seq - 1 ("" for seq
1) and ``box`` the turn sealed to the standby's key. A standby keeps the frames in its
LiveTailBuffer, a mirror of the holder's chains, and takes a frame only where it
extends what it holds: ``decide_frame`` refuses a frame whose ``prev`` is not the key
it holds at seq - 1 (a gap, or histories that parted), keeps what it holds when it is
the same turn (same key and prev: a repeat), and where it differs the holder's chain
wins: the standby's turns from that seq on are dropped and the frame takes their
place. A frame that is the holder's head also drops anything the standby holds beyond
it. So any replay, reordering or repetition of frames leaves the buffer a prefix of
the holder's chain, and frames go on until it is the whole chain.

The standby acks every flush with how far it matches (``match_point``): per topic the
last frame of the flush it took or, when it took none, its last frame, as seq and key.
``acked`` turns that into the holder's ``Follow`` of the standby: where the key
matches the holder's turn at that seq, everything up to it is confirmed and the next
flush starts after it; where it does not (the standby followed another holder's chain),
the holder probes further back, doubling the step each time, until a frame's ``prev``
fits. Flushes are idempotent (a repeated frame changes nothing) and monotonic (the
confirmed seq only grows while acks keep matching; a late ack never lowers it).

Before a turn is sealed, ``redact`` replaces secrets (tokens, keys, passwords; the
patterns are a setting) with a placeholder, so they never leave the holder.

Invariants:
- A TailFrame that exists is well-formed (TailRefused otherwise); seq 1 has prev "".
- After any sequence of ``decide_frame`` outcomes applied as described, a topic's
  buffer holds exactly seqs m..n for some m <= n (m is 1 unless the buffer was pruned
  of turns the transcript archive brought: ``LiveTailBuffer.prune``).
- ``Follow.confirmed`` is only ever a seq at which the standby's key equals the
  holder's; ``Follow.start`` is at least 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from baton.core.errors import TailRefused
from baton.core.ledger_marker import MAX_ID

MAX_TOPIC = 64
MAX_KEY = 256
REDACTED = "[redacted]"

#: Secrets that never leave the holder in a live-tail frame. Each is a regular
#: expression; the whole match is replaced, or only group "secret" when it has one.
DEFAULT_REDACTIONS: tuple[str, ...] = (
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"\bsk-[A-Za-z0-9_-]{16,}",  # OpenAI / Anthropic style API keys
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key ids
    r"\b\d{6,12}:[A-Za-z0-9_-]{30,}",  # Telegram bot tokens
    r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|token)\s*[:=]\s*(?P<secret>\S+)",
)


def compile_redactions(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """The patterns compiled; a bad one raises re.error (the settings refuse it)."""
    return tuple(re.compile(p) for p in patterns)


def redact(text: str, patterns: Iterable[re.Pattern[str]]) -> str:
    """``text`` with every match of ``patterns`` replaced by REDACTED."""
    for pattern in patterns:
        text = pattern.sub(_redacted, text)
    return text


def _redacted(match: re.Match[str]) -> str:
    """The whole match, or only its group "secret" (so "password: x" stays readable)."""
    if "secret" not in match.re.groupindex or match.group("secret") is None:
        return REDACTED
    start, end = match.span("secret")
    whole, offset = match.group(0), match.start()
    return whole[: start - offset] + REDACTED + whole[end - offset :]


@dataclass(frozen=True)
class TailFrame:
    """Turn ``seq`` of ``topic`` as a standby keeps it: sealed, with its chain links."""

    topic: str
    seq: int
    key: str
    prev: str
    box: bytes

    def __post_init__(self) -> None:
        for name, limit in (("topic", MAX_TOPIC), ("key", MAX_KEY), ("prev", MAX_KEY)):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > limit:
                raise TailRefused(f"frame {name}: expected a string of at most {limit}")
        if not self.topic or not self.key:
            raise TailRefused("frame: empty topic or key")
        seq = self.seq
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_ID:
            raise TailRefused(f"frame seq: expected an integer in [1, {MAX_ID}]")
        if (seq == 1) != (self.prev == ""):
            raise TailRefused("frame prev: empty exactly for seq 1")
        if not isinstance(self.box, bytes) or not self.box:
            raise TailRefused("frame box: expected sealed bytes")


class FrameResult(StrEnum):
    """What a standby's buffer did with a frame. ADDED and REPLACED changed it."""

    ADDED = "added"  # it extends the chain by one
    DUPLICATE = "duplicate"  # the same turn (by key) is held already
    REPLACED = "replaced"  # held turns from this seq on differed: dropped, frame stored
    REFUSED = "refused"  # prev does not fit (a gap or another chain): nothing stored


def decide_frame(
    prev_key: str | None, held: tuple[str, str] | None, frame: TailFrame
) -> FrameResult:
    """``prev_key``: the key the buffer holds at frame.seq - 1; ``held``: the (key,
    prev) of the frame it holds at frame.seq (None: nothing held there). A held frame
    is the same turn only with the same key after the same turn."""
    if frame.seq > 1 and prev_key != frame.prev:
        return FrameResult.REFUSED
    if held is None:
        return FrameResult.ADDED
    return FrameResult.DUPLICATE if held == (frame.key, frame.prev) else FrameResult.REPLACED


@dataclass(frozen=True)
class Follow:
    """The holder's view of one standby's copy of one topic.

    ``confirmed``: the seq up to which the standby's copy is known equal to the chain
    (None while unknown); ``start``: the seq the next flush sends from; ``misses``: acks
    in a row that did not match (the probing step doubles with each)."""

    confirmed: int | None = None
    start: int | None = None
    misses: int = 0


def start_of(follow: Follow | None, head: int) -> int | None:
    """Where the next flush to this standby starts in a chain of ``head`` turns; None:
    there is nothing to send. A standby not heard from yet is probed with the head."""
    if head < 1:
        return None
    if follow is None or follow.start is None:
        return head
    return follow.start if follow.start <= head else None


def match_point(
    taken: int | None, taken_key: str | None, head: tuple[int, str] | None
) -> tuple[int, str]:
    """What a standby acks for a topic after a flush: the highest seq of the flush it
    took (not REFUSED) with the key it holds there now, or else its last frame, or
    (0, "") when it holds nothing."""
    if taken is not None and taken_key is not None:
        return taken, taken_key
    return head if head is not None else (0, "")


def acked(follow: Follow | None, have: int, have_key: str, mine: str | None, head: int) -> Follow:
    """A standby acks a flush: its copy matches up to ``have``, whose key is
    ``have_key`` (the last frame of the flush it took, else its last frame). ``mine``
    is the key of the holder's turn ``have`` (None when it has no such turn); the
    holder's chain has ``head`` turns."""
    if have == 0 or (mine is not None and mine == have_key):
        confirmed = (
            have if follow is None or follow.confirmed is None else max(have, follow.confirmed)
        )
        return Follow(confirmed, confirmed + 1, 0)
    misses = 1 if follow is None else follow.misses + 1
    base = min(have, head)
    return Follow(None, max(1, base - 2 ** (misses - 1) + 1), misses)


class LiveTailBuffer(Protocol):
    """The LiveTailBuffer port: a standby's mirror of the holder's chains, as sealed
    frames. Adapters: SqliteLiveTailBuffer (data/tail/buffer.sqlite) and MemoryLiveTailBuffer;
    both pass tests/contract/test_tail_buffer.py.

    Atomicity: each method is one durable transaction (the SQLite file survives kill -9
    and power loss); when it raises, nothing changed. Errors: TailError (TailCorrupt for
    a file that is not a buffer; it is left untouched). After close() every method but
    close raises TailError.
    """

    def take(self, frame: TailFrame, head: int | None) -> FrameResult:
        """Apply ``decide_frame``: ADDED stores the frame; REPLACED drops the held
        frames from frame.seq on, then stores it. When ``head`` equals frame.seq and the
        frame was not REFUSED, frames beyond it are dropped too (the holder's chain ends
        there). Marks the topic dirty from the lowest seq it changed."""
        ...

    def heads(self) -> dict[str, tuple[int, str]]:
        """Every topic held, with its last seq and that frame's key."""
        ...

    def frames(self, topic: str, after_seq: int, limit: int) -> list[TailFrame]:
        """Up to ``limit`` frames of ``topic`` with seq > ``after_seq``, ascending."""
        ...

    def prune(self, topic: str, before_seq: int) -> int:
        """Drop the frames of ``topic`` with seq < ``before_seq``, never its last one (the
        transcripts hold them: baton.actors.tail_archive); how many went. A frame below
        what is left is REFUSED then, for want of its ``prev``; seq 1 is always taken."""
        ...

    def dirty(self) -> dict[str, int]:
        """Topics changed since they were last marked clean, each with the lowest seq
        that changed (the replay into the transcripts starts there)."""
        ...

    def clean(self, topic: str) -> None:
        """The topic was replayed into the transcripts: no longer dirty."""
        ...

    def close(self) -> None:
        """Release the buffer; calling it again does nothing."""
        ...
