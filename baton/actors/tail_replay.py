"""Replaying the LiveTailBuffer into the transcripts when a standby takes over
(docs/DESIGN.md, "Live tail and planned handoff"): the agent runs on a new holder only after this.

Only topics the buffer marks dirty are replayed, from the lowest seq that changed
since the last replay. Turn by turn: a transcript turn with the same ledger key is
kept (it may be the unredacted original of this machine's own turn); one with another
key means this machine's copy parted from the chain (it held the lease before and made
turns nobody received), so its turns from there are dropped and the chain's are put in.
A frame that does not open, or a turn the transcript will not take, ends that topic's
replay where it is, logged and counted; the rest of the transcript is untouched. So
does a first frame whose ``prev`` is not the transcript's turn before it: the chain is
never spliced onto another.

Then the loose turns (baton.actors.loose_turns: turns the holder's markers said were
done, which its chain never brought) are appended, per topic in message-id order, after
that topic's last turn: one whose ledger key the transcript holds is left out, one older
than the last turn is skipped (never inserted before a held turn; ``tail.loose_stale``),
the rest are added (``tail.loose_added``), each with the next seq. A loose turn the
transcript refuses ends that topic's additions, logged and counted like a frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import nacl.public

from baton.actors.loose_turns import LooseTurn, place
from baton.adapters.metrics import Counters
from baton.core.errors import TailRefused, TranscriptRefused
from baton.core.live_tail import LiveTailBuffer
from baton.core.transcript import PutResult, TranscriptStore, TranscriptTurn
from baton.wire.tail_transport import unseal

log = logging.getLogger("baton.tail")

PAGE = 500


@dataclass
class Replayed:
    topics: int = 0
    turns: int = 0  # put into the transcripts
    dropped: int = 0  # this machine's own turns dropped for the chain's
    failed: int = 0  # topics whose replay stopped early
    loose_added: int = 0  # loose turns appended
    loose_stale: int = 0  # loose turns older than their topic's last turn: skipped


def replay(
    buffer: LiveTailBuffer,
    transcripts: TranscriptStore,
    key: nacl.public.PrivateKey,
    counters: Counters,
    loose: Mapping[str, Sequence[LooseTurn]] | None = None,
) -> Replayed:
    """The buffer's changed topics into ``transcripts``, then the ``loose`` turns (by
    topic) after each topic's last turn."""
    done = Replayed()
    for topic, start in sorted(buffer.dirty().items()):
        done.topics += 1
        if not _topic(buffer, transcripts, key, topic, start, done=done):
            done.failed += 1
            counters.inc("tail.replay_failed")
        buffer.clean(topic)
    counters.inc("tail.replayed", done.turns)
    if done.dropped:
        counters.inc("tail.parted", done.dropped)
    return add_loose(transcripts, loose or {}, counters, done)


def add_loose(
    transcripts: TranscriptStore,
    loose: Mapping[str, Sequence[LooseTurn]],
    counters: Counters,
    done: Replayed | None = None,
) -> Replayed:
    """The ``loose`` turns (by topic) after each topic's last turn: at a replay, or one
    whose news reached a holder after its replay (``done``: a replay's, loose counts 0)."""
    done = Replayed() if done is None else done
    for topic, turns in sorted(loose.items()):
        if turns and not _loose(transcripts, topic, turns, done):
            done.failed += 1
            counters.inc("tail.replay_failed")
    counters.inc("tail.loose_added", done.loose_added)
    counters.inc("tail.loose_stale", done.loose_stale)
    return done


def _topic(
    buffer: LiveTailBuffer,
    transcripts: TranscriptStore,
    key: nacl.public.PrivateKey,
    topic: str,
    start: int,
    *,
    done: Replayed,
) -> bool:
    after = start - 1
    first = buffer.frames(topic, after, 1)
    if first and first[0].seq > 1:  # the buffer was pruned, or replayed before, below it
        below = transcripts.turns(topic, first[0].seq - 2, 1)
        if not below or (below[0].seq, below[0].ledger_key) != (first[0].seq - 1, first[0].prev):
            log.error("tail: replay of %s stopped: its chain does not go on from turn %d",
                      topic, first[0].seq - 1)  # fmt: skip
            return False
    while frames := buffer.frames(topic, after, PAGE):
        held = {t.seq: t for t in transcripts.turns(topic, frames[0].seq - 1, PAGE)}
        for frame in frames:
            after = frame.seq
            try:
                ok = settle(
                    transcripts, held, frame.seq, frame.key, partial(unseal, frame, key), done=done
                )
            except TailRefused as exc:
                log.error("tail: replay of %s stopped: %s", topic, exc.detail)
                return False
            if not ok:
                return False
    return True


def settle(
    transcripts: TranscriptStore,
    held: dict[int, TranscriptTurn],
    seq: int,
    key: str,
    turn: Callable[[], TranscriptTurn],
    *,
    done: Replayed,
) -> bool:
    """The chain's turn ``seq`` (ledger key ``key``; ``turn`` makes it) into the
    transcripts, whose turns from ``seq`` on ``held`` has: a held turn with the same key
    is kept; one with another key is dropped with the turns after it (this machine's
    copy parted from the chain) and the chain's put in its place. False when the
    transcript does not take it (logged)."""
    mine = held.get(seq)
    if mine is not None and mine.ledger_key == key:
        return True
    made = turn()
    if mine is not None:
        done.dropped += transcripts.truncate(made.topic, seq - 1)
        held.clear()
    result = transcripts.put(made)
    if result is not PutResult.ADDED:
        log.error("tail: replay of %s stopped at %d: %s", made.topic, seq, result)
        return False
    done.turns += 1
    return True


def _loose(
    transcripts: TranscriptStore, topic: str, turns: Sequence[LooseTurn], done: Replayed
) -> bool:
    last, held = _tail_of(transcripts, topic, min(t.message_id for t in turns))
    placed = place(turns, None if last is None else last.message_id, held)
    done.loose_stale += placed.stale
    seq = 0 if last is None else last.seq
    for loose in placed.added:
        try:
            turn = transcripts.append(
                topic,
                loose.ledger_key,
                loose.message_id,
                loose.text,
                replies=loose.replies,
                at_ms=loose.at_ms,
            )
        except TranscriptRefused as exc:
            log.error("tail: loose turn %s of %s refused: %s", loose.ledger_key, topic, exc.detail)
            return False
        if turn.seq > seq:  # else held already, further back than _tail_of looked
            seq = turn.seq
            done.loose_added += 1
    return True


def _tail_of(
    transcripts: TranscriptStore, topic: str, since_id: int
) -> tuple[TranscriptTurn | None, set[str]]:
    """The topic's last turn, and the keys of its turns back to the first whose message
    id is below ``since_id`` (the newest turns, where a loose turn's key could be)."""
    end = transcripts.last_seq(topic)
    last: TranscriptTurn | None = None
    held: set[str] = set()
    while end > 0:
        page = transcripts.turns(topic, max(0, end - PAGE), min(PAGE, end))
        if not page:
            break
        last = last or page[-1]
        held.update(t.ledger_key for t in page)
        if page[0].message_id < since_id:
            break
        end = page[0].seq - 1
    return last, held
