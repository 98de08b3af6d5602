"""Loose turns: the turns a standby knows from the holder's reply markers alone
(docs/DESIGN.md, "Live tail and planned handoff"). Pure: no I/O, no clock, no thread.

The holder's markers tell a standby each message, its replies and when the last reply
was delivered, well before the live tail brings that turn's frame (a flush interval
later). Should the holder die in between, the user saw replies the chain never had; the
standby keeps such a turn loose, in memory, until the holder's chain brings its ledger
key (then it is dropped) or this machine takes over (then the replay appends it after
its topic's last turn, baton.actors.tail_replay).

Invariants:
- Only redacted text is kept: a LooseTurn is made by ``LooseTurn.of`` with the patterns
  the live tail redacts with, so a standby holds no more than its buffer would.
- At most ``limit`` loose turns, one per ledger key; past the limit the oldest (first
  seen) go first, and ``add`` says how many went.
- ``place`` never puts a turn before a turn a transcript holds: a loose turn older (by
  message id) than the topic's last turn is stale, one whose key is held is known,
  and the rest are added in message-id order.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from baton.core.ledger import LedgerEntry
from baton.core.live_tail import redact

MAX_LOOSE = 10_000


@dataclass(frozen=True)
class LooseTurn:
    """The turn ``entry`` makes (as the holder's TurnDone makes it), redacted, without a
    seq: it gets one only when it is appended."""

    topic: str
    ledger_key: str
    message_id: int
    text: str
    replies: tuple[str, ...]
    at_ms: float
    epoch: int = 0  # the newest lease epoch its replies were prepared or sent under

    @classmethod
    def of(cls, entry: LedgerEntry, patterns: Iterable[re.Pattern[str]]) -> LooseTurn:
        patterns = tuple(patterns)
        return cls(
            entry.topic,
            entry.key,
            entry.message_id,
            redact(entry.text, patterns),
            tuple(redact(r.text, patterns) for r in entry.replies),
            entry.received_ms,
            max([entry.prepared_epoch or 0, *(r.epoch or 0 for r in entry.replies)]),
        )


class LooseTurns:
    """The loose turns of one standby, by ledger key, oldest first.

    The markers and the live tail reach a standby by two actors, in either order: a
    turn the chain already brought is not kept loose when its marker's news comes after
    (the last ``limit`` keys the chain brought are remembered for that)."""

    def __init__(self, limit: int = MAX_LOOSE) -> None:
        if limit < 1:
            raise ValueError("LooseTurns: limit must be at least 1")
        self.limit = limit
        self._turns: OrderedDict[str, LooseTurn] = OrderedDict()
        self._chained: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._turns)

    def add(self, turn: LooseTurn) -> int:
        """Keep ``turn`` (the same key again replaces it in its place) unless the chain
        brought it already; how many of the oldest were dropped to stay within the
        limit."""
        if turn.ledger_key in self._chained:
            return 0
        self._turns[turn.ledger_key] = turn
        dropped = 0
        while len(self._turns) > self.limit:
            self._turns.popitem(last=False)
            dropped += 1
        return dropped

    def discard(self, key: str) -> None:
        """The holder's chain brought ``key``: its loose turn is no longer needed, now
        or when its marker's news comes later."""
        self._turns.pop(key, None)
        self._chained[key] = None
        self._chained.move_to_end(key)
        while len(self._chained) > self.limit:
            self._chained.popitem(last=False)

    def take(self, before: int | None = None) -> dict[str, list[LooseTurn]]:
        """Every loose turn (``before``: of an epoch below it) by topic in message-id
        order; they are forgotten, the others kept."""
        topics: dict[str, list[LooseTurn]] = {}
        for key, turn in list(self._turns.items()):
            if before is None or turn.epoch < before:
                topics.setdefault(turn.topic, []).append(turn)
                del self._turns[key]
        return {t: sorted(turns, key=lambda x: x.message_id) for t, turns in topics.items()}


@dataclass(frozen=True)
class Placed:
    """What ``place`` decided for one topic's loose turns."""

    added: tuple[LooseTurn, ...]  # to append, in this order
    stale: int  # older than the topic's last turn: skipped
    known: int  # the transcript holds their key already


def place(turns: Sequence[LooseTurn], last_id: int | None, held: Collection[str]) -> Placed:
    """Which of one topic's loose ``turns`` go after its last turn (message id
    ``last_id``; None: the topic has none). ``held`` are ledger keys the transcript
    holds (at least those of its turns from ``min(message ids of turns)`` on)."""
    added: list[LooseTurn] = []
    stale = known = 0
    for turn in sorted(turns, key=lambda x: x.message_id):
        if turn.ledger_key in held:
            known += 1
        elif last_id is not None and turn.message_id < last_id:
            stale += 1
        else:
            added.append(turn)
            last_id = turn.message_id
    return Placed(tuple(added), stale, known)
