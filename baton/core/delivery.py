"""The delivery rules between the ledger, the agent and the outbox (sans-IO).

- ``next_offset``/``cursor``: the channel cursor. An update may be confirmed at the
  channel (the cursor passes it) only once its message is done (acked) in the ledger,
  or *secured* (every standby in sync has durably recorded it, so a takeover finds it:
  a slow topic holds up no other), or it carried nothing to answer; and only if this
  machine polled it itself. So the cursor is the lowest update id still held back, at
  most one past the highest this term has seen. A crash before then means the channel
  delivers it again.
- ``to_secure``: a message not yet prepared after SECURE_AFTER_MS is told to the
  standbys as received (sooner would cost every message a marker, and most are
  answered well within it).
- ``next_in_topic``: replies within a topic keep the order of their messages, so a topic
  works on its oldest pending message only (by message id).
- ``resume``: what to do with a reply that is prepared but not known to be delivered,
  when this term did not itself just prepare it (an earlier holder or an unknown send
  outcome): a sink that can say is asked first; for one that cannot (Telegram),
  ``ambiguous_policy`` decides and the case is counted as ambiguous.
- Failure replies: a message too large for the agent, and a message the agent failed on
  more than ``retries`` times, still get exactly one reply, saying so, so no message is
  silently dropped.
- ``split_replies``: a reply longer than the sink takes (Telegram: 4096 UTF-16 code
  units) is split, before it is prepared, into parts at paragraph, then line, then word
  boundaries (a hard cut only where there is none), so each part is a reply of its own
  with its own key and is delivered exactly once like any other. Every part fits, none
  is blank, and only the whitespace at a cut is lost.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Literal

from baton.core.ledger import LedgerEntry, LedgerState

MAX_TEXT_BYTES = 64 * 1024
SECURE_AFTER_MS = 1000.0
MAX_REPLY_UNITS = 4096  # Telegram's limit on a message, in UTF-16 code units
_BOUNDARIES = ("\n\n", "\n", " ")

Resume = Literal["commit", "send", "commit_unknown"]


def next_offset(pending_update_ids: Iterable[int | None], highest_seen: int | None) -> int | None:
    """The offset to poll with: it confirms only updates this machine has itself polled
    (up to ``highest_seen``, this term) and that are done. Entries learnt from another
    holder's markers say nothing of lower updates it had not prepared yet, so they can
    only lower the offset, never raise it; before its first poll a term confirms nothing
    (None)."""
    if highest_seen is None:
        return None
    return min([u for u in pending_update_ids if u is not None] + [highest_seen + 1])


def cursor(
    pending: Iterable[LedgerEntry], secured: Collection[str], highest_seen: int | None
) -> tuple[int | None, bool]:
    """(offset to poll with, whether a message polled is still held back): the cursor
    stops at the oldest pending message that is not ``secured``."""
    held = [e.update_id for e in pending if e.key not in secured]
    return next_offset(held, highest_seen), bool(held)


def to_secure(
    pending: Iterable[LedgerEntry], wall_ms: float, after_ms: float | None = None
) -> list[LedgerEntry]:
    """The pending messages not prepared yet that were recorded ``after_ms`` (default
    SECURE_AFTER_MS) ago or more, or at a wall time ahead of ``wall_ms`` (a clock that
    stepped back)."""
    after = SECURE_AFTER_MS if after_ms is None else after_ms
    return [
        e
        for e in pending
        if e.state.rank < LedgerState.PREPARED.rank and not 0 <= wall_ms - e.received_ms < after
    ]


def next_in_topic(pending: Iterable[LedgerEntry]) -> dict[str, LedgerEntry]:
    """Topic -> its oldest pending entry."""
    first: dict[str, LedgerEntry] = {}
    for entry in pending:
        if entry.state is LedgerState.ACKED:
            continue
        seen = first.get(entry.topic)
        if seen is None or entry.message_id < seen.message_id:
            first[entry.topic] = entry
    return first


def resume(delivered: bool | None, policy: str) -> Resume:
    """A prepared reply of unknown fate: commit it (it arrived), send it, or (a sink
    that cannot say, policy "skip") record it as delivered without knowing."""
    if delivered is True:
        return "commit"
    if delivered is False or policy == "resend":
        return "send"
    return "commit_unknown"


def too_large(text: str) -> bool:
    return len(text.encode("utf-8", "replace")) > MAX_TEXT_BYTES


def too_large_reply(text: str) -> str:
    size = len(text.encode("utf-8", "replace"))
    limit = MAX_TEXT_BYTES
    return f"[baton] this message is too large to answer ({size} bytes; the limit is {limit})."


def failed_reply(attempts: int, error: str | None) -> str:
    why = (error or "unknown error")[:300]
    return f"[baton] the agent failed on this message {attempts} times; last error: {why}"


def retry_delay_ms(attempts: int) -> float:
    """Backoff before the agent runs again on a message it failed: 0.5 s, 1 s, 2 s ... 10 s."""
    return float(min(10000, 500 * 2 ** max(0, attempts - 1)))


def utf16_units(text: str) -> int:
    """The length of ``text`` as Telegram counts it: UTF-16 code units."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def split_replies(replies: Iterable[str], limit: int = MAX_REPLY_UNITS) -> tuple[str, ...]:
    """Every reply as parts of at most ``limit`` UTF-16 code units, in order."""
    return tuple(part for reply in replies for part in split_reply(reply, limit))


def split_reply(text: str, limit: int = MAX_REPLY_UNITS) -> list[str]:
    """``text`` in parts of at most ``limit`` units, cut at the last paragraph, line or
    word boundary that fits (the separator at a cut is dropped); never a blank part."""
    if limit < 2:
        raise ValueError("limit must be at least 2 (a character outside the BMP)")
    parts: list[str] = []
    rest = text
    while utf16_units(rest) > limit:
        end = _fit(rest, limit)
        window = rest[:end]
        for sep in _BOUNDARIES:
            at = window.rfind(sep)
            if at > 0:
                head, rest = window[:at], rest[at + len(sep) :]
                break
        else:
            head, rest = window, rest[end:]
        if head.strip():
            parts.append(head)
    if rest.strip() or not parts:
        parts.append(rest)
    return parts


def _fit(text: str, limit: int) -> int:
    """How many characters of ``text`` fit in ``limit`` UTF-16 units."""
    units = 0
    for n, c in enumerate(text):
        units += 2 if ord(c) > 0xFFFF else 1
        if units > limit:
            return n
    return len(text)
