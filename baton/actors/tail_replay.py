"""Replaying the LiveTailBuffer into the transcripts when a standby takes over
(DESIGN.md section 6, "Live tail"): the agent runs on a new holder only after this.

Only topics the buffer marks dirty are replayed, from the lowest seq that changed
since the last replay. Turn by turn: a transcript turn with the same ledger key is
kept (it may be the unredacted original of this machine's own turn); one with another
key means this machine's copy parted from the chain (it held the lease before and made
turns nobody received), so its turns from there are dropped and the chain's are put in.
A frame that does not open, or a turn the transcript will not take, ends that topic's
replay where it is, logged and counted; the rest of the transcript is untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nacl.public

from baton.core.errors import TailRefused
from baton.core.live_tail import TailBuffer
from baton.core.transcript import PutResult, TranscriptStore
from baton.metrics import Counters
from baton.wire.tail_transport import unseal

log = logging.getLogger("baton.tail")

PAGE = 500


@dataclass
class Replayed:
    topics: int = 0
    turns: int = 0  # put into the transcripts
    dropped: int = 0  # this machine's own turns dropped for the chain's
    failed: int = 0  # topics whose replay stopped early


def replay(
    buffer: TailBuffer,
    transcripts: TranscriptStore,
    key: nacl.public.PrivateKey,
    counters: Counters,
) -> Replayed:
    done = Replayed()
    for topic, start in sorted(buffer.dirty().items()):
        done.topics += 1
        if not _topic(buffer, transcripts, key, topic, start, done):
            done.failed += 1
            counters.inc("tail.replay_failed")
        buffer.clean(topic)
    counters.inc("tail.replayed", done.turns)
    if done.dropped:
        counters.inc("tail.parted", done.dropped)
    return done


def _topic(
    buffer: TailBuffer,
    transcripts: TranscriptStore,
    key: nacl.public.PrivateKey,
    topic: str,
    start: int,
    done: Replayed,
) -> bool:
    after = start - 1
    while frames := buffer.frames(topic, after, PAGE):
        held = {t.seq: t for t in transcripts.turns(topic, after, PAGE)}
        for frame in frames:
            after = frame.seq
            mine = held.get(frame.seq)
            if mine is not None and mine.ledger_key == frame.key:
                continue
            try:
                turn = unseal(frame, key)
            except TailRefused as exc:
                log.error("tail: replay of %s stopped: %s", topic, exc.detail)
                return False
            if mine is not None:
                done.dropped += transcripts.truncate(topic, frame.seq - 1)
                held = {}
            result = transcripts.put(turn)
            if result is not PutResult.ADDED:
                log.error("tail: replay of %s stopped at %d: %s", topic, frame.seq, result)
                return False
            done.turns += 1
    return True
