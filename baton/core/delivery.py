"""The delivery rules between the ledger, the agent and the outbox (sans-IO).

- ``next_offset``: the channel cursor. An update may be confirmed at the channel (the
  cursor passes it) only once its message is done (acked) in the ledger or it carried
  nothing to answer, and only if this machine polled it itself; so the cursor is the
  lowest update id still pending, at most one past the highest this term has seen. A
  crash before "done" means the channel delivers it again.
- ``next_in_topic``: replies within a topic keep the order of their messages, so a topic
  works on its oldest pending message only (by message id).
- ``resume``: what to do with a reply that is prepared but not known to be delivered,
  when this term did not itself just prepare it (an earlier holder or an unknown send
  outcome): a sink that can say is asked first; for one that cannot (Telegram),
  ``ambiguous_policy`` decides and the case is counted as ambiguous.
- Failure replies: a message too large for the agent, and a message the agent failed on
  more than ``retries`` times, still get exactly one reply, saying so, so no message is
  silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from baton.core.ledger import LedgerEntry, LedgerState

MAX_TEXT_BYTES = 64 * 1024

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
