"""The transcript archive, both sides (docs/DESIGN.md, "Transcript archive"; the
format: baton.core.transcript_archive).

**ArchiveOut**, the holder's: keeps the archive's parts equal to the transcripts,
redacted as the live tail redacts them. A term begins by checking every part of every
topic (a part that differs is rewritten, parts beyond the transcript removed); then
each turn added rewrites its part, and a topic whose files changed under it (a pull, a
standby's queued change, the agent) is checked again whole. StateSync commits, signs
and pushes what changed.

**ArchiveIn**, a standby's: takes into the transcripts what the archive has that they
lack, by the replay's rules (baton.actors.tail_replay.settle: where this machine's own
turns part from the archive's chain, the chain wins), for each topic whose files
changed since it last took it whole. ``prune`` then drops from the buffer the frames
below the point where the transcripts and the buffer agree (the same turn after the
same turn), so the buffer keeps only what git does not have yet. At a takeover the
archive is taken in whole before the buffer is replayed: this machine's own turns, then
the archive's chain, then the buffer's, then the loose turns.

Both do a bounded amount of work a step (``PARTS_PER_STEP`` parts, ``TURNS_PER_STEP``
turns) and go on at the next; an ArchiveError (the file system) leaves the topic to the
next step, counted (``tail.archive_errors``) and logged at most once a minute.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from baton.actors.tail_replay import Replayed, settle
from baton.adapters.metrics import Counters
from baton.core.errors import ArchiveError, BatonError
from baton.core.live_tail import LiveTailBuffer, redact
from baton.core.transcript import TranscriptStore, TranscriptTurn
from baton.core.transcript_archive import (
    PART_TURNS,
    TranscriptArchive,
    decode_part,
    encode_line,
    first_seq,
    part_of,
)

log = logging.getLogger("baton.tail")

LOOK_MS = 1000  # how often the archive's files are looked at for changes
PARTS_PER_STEP = 20
LINES_KEPT = 50 * PART_TURNS  # the current parts of 50 topics
TURNS_PER_STEP = 200
REPEAT_LOG_MS = 60_000


class Complaints:
    """A failure of the archive's work counted every time, logged at most once a minute:
    an ArchiveError (the file system), or one nobody foresaw (the actor's guard)."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.logged_ms: float | None = None

    def __call__(self, exc: Exception, now_ms: float) -> None:
        self.counters.inc("tail.archive_errors")
        if self.logged_ms is None or now_ms - self.logged_ms >= REPEAT_LOG_MS:
            self.logged_ms = now_ms
            detail = exc.detail if isinstance(exc, BatonError) else repr(exc)
            log.warning("tail: transcript archive: %s", detail)


class ArchiveOut:
    def __init__(
        self,
        archive: TranscriptArchive,
        patterns: Sequence[re.Pattern[str]],
        counters: Counters,
    ) -> None:
        self.archive = archive
        self.patterns = tuple(patterns)
        self.counters = counters
        self.pending: dict[str, int] = {}  # topic -> the first part still to check
        self.signs: dict[str, tuple[int, ...]] = {}  # topic -> its files as last left
        self.complain = Complaints(counters)
        self.lines: dict[TranscriptTurn, bytes] = {}  # the newest turns' lines

    def begin(self, topics: Iterable[str], now_ms: float) -> None:
        """A term begins: every part of every topic is checked, and a topic the
        transcripts lack is removed from the archive."""
        self.pending = dict.fromkeys(self._with_archived(topics, now_ms), 0)
        self.signs.clear()

    def changed(self, topic: str, seq: int) -> None:
        """Turn ``seq`` of ``topic`` was added: its part is rewritten."""
        part = part_of(seq)
        self.pending[topic] = min(self.pending.get(topic, part), part)

    def look(self, topics: Iterable[str], now_ms: float) -> None:
        """A topic whose files are not as this side left them is checked whole."""
        for topic in self._with_archived(topics, now_ms):
            try:
                if topic not in self.pending and self.signs.get(topic) != self.archive.signature(
                    topic
                ):
                    self.pending[topic] = 0
            except ArchiveError as exc:
                self.complain(exc, now_ms)

    def _with_archived(self, topics: Iterable[str], now_ms: float) -> list[str]:
        """``topics`` and every topic the archive has (a planted one, an old holder's)."""
        try:
            archived = self.archive.topics()
        except ArchiveError as exc:
            self.complain(exc, now_ms)
            archived = []
        return sorted({*topics, *archived})

    def step(self, transcripts: TranscriptStore, now_ms: float) -> None:
        budget = PARTS_PER_STEP
        for topic in sorted(self.pending):
            try:
                budget = self._topic(transcripts, topic, budget)
            except ArchiveError as exc:
                self.complain(exc, now_ms)
            if budget <= 0:
                return

    def _topic(self, transcripts: TranscriptStore, topic: str, budget: int) -> int:
        part = self.pending[topic]
        last = transcripts.last_seq(topic)
        end = part_of(last) if last else -1
        while part <= end:
            if budget <= 0:
                return 0
            budget -= 1
            turns = transcripts.turns(topic, first_seq(part) - 1, PART_TURNS)
            data = b"".join(self._line(t) for t in turns)
            if self._held(topic, part) != data:
                self.archive.write(topic, part, data)
                self.counters.inc("tail.archive_written")
            part += 1
            self.pending[topic] = part
        for extra in self.archive.parts(topic):
            if extra > end:  # the transcript cut short (a replay dropped turns), or none
                self.archive.remove(topic, extra)
        del self.pending[topic]
        self.signs[topic] = self.archive.signature(topic)
        return budget

    def _held(self, topic: str, part: int) -> bytes | None:
        """What the part's file holds; None also when it cannot be read (a link, a
        FIFO, a directory in its place: the write replaces it)."""
        try:
            return self.archive.read(topic, part)
        except ArchiveError:
            return None

    def _line(self, turn: TranscriptTurn) -> bytes:
        """The turn's line, redacted. The lines of the newest turns are kept (by the
        whole turn: one put again after a truncation may differ), so a turn redacts only
        itself, not its whole part again."""
        line = self.lines.get(turn)
        if line is None:
            line = encode_line(
                dataclasses.replace(
                    turn,
                    text=redact(turn.text, self.patterns),
                    replies=tuple(redact(r, self.patterns) for r in turn.replies),
                )
            )
            self.lines[turn] = line
            while len(self.lines) > LINES_KEPT:
                del self.lines[next(iter(self.lines))]  # the oldest
        return line


class ArchiveIn:
    def __init__(self, archive: TranscriptArchive, counters: Counters) -> None:
        self.archive = archive
        self.counters = counters
        self.signs: dict[str, tuple[int, ...]] = {}  # topic -> its files when last taken whole
        self.complain = Complaints(counters)
        self.more = False  # the last step was cut short: the next goes on at once

    def step(
        self,
        transcripts: TranscriptStore,
        buffer: LiveTailBuffer,
        now_ms: float,
        budget: int | None = TURNS_PER_STEP,
    ) -> Replayed:
        """Take in what changed, up to ``budget`` turns looked at (None: all of it)."""
        done = Replayed()
        looked = 0
        try:
            topics = self.archive.topics()
        except ArchiveError as exc:
            self.complain(exc, now_ms)
            return done
        for topic in topics:
            left = None if budget is None else budget - looked
            if left is not None and left <= 0:
                break
            try:
                sign = self.archive.signature(topic)
                if self.signs.get(topic) == sign:
                    continue
                whole, seen = self._topic(transcripts, buffer, topic, left, done)
            except ArchiveError as exc:
                self.complain(exc, now_ms)
                continue
            looked += seen
            if whole:
                self.signs[topic] = sign
        self.more = budget is not None and looked >= budget
        self.counters.inc("tail.archive_taken", done.turns)
        if done.dropped:
            self.counters.inc("tail.parted", done.dropped)
        return done

    def _topic(
        self,
        transcripts: TranscriptStore,
        buffer: LiveTailBuffer,
        topic: str,
        budget: int | None,
        done: Replayed,
    ) -> tuple[bool, int]:
        """Whether the topic was taken in as far as its archive goes (not cut short by
        ``budget``), and how many turns were looked at. The live tail's chain outranks
        the archive's (git brings it later): where the archive differs from a frame of
        the buffer, or from a turn below the buffer's first frame (pruned: the
        transcripts hold the chain's only copy there), the taking stops."""
        seq = self._agreed(transcripts, topic)
        part, seen = part_of(seq + 1), 0
        first = buffer.frames(topic, 0, 1)
        floor = first[0].seq if first else 1
        while (data := self.archive.read(topic, part)) is not None:
            decoded = decode_part(topic, part, data)
            turns = [t for t in decoded.turns if t.seq > seq]
            held = {t.seq: t for t in transcripts.turns(topic, seq, PART_TURNS)}
            framed = {f.seq: f.key for f in buffer.frames(topic, seq, PART_TURNS)}
            for turn in turns:
                if budget is not None and seen >= budget:
                    return False, seen
                seen += 1
                mine = held.get(turn.seq)
                if framed.get(turn.seq, turn.ledger_key) != turn.ledger_key or (
                    turn.seq < floor and mine is not None and mine.ledger_key != turn.ledger_key
                ):
                    self.counters.inc("tail.archive_parted")
                    log.info("tail: archive of %s parts from the live tail at %d", topic, turn.seq)
                    return True, seen
                if not settle(
                    transcripts, held, turn.seq, turn.ledger_key, _given(turn), done=done
                ):
                    done.failed += 1
                    return True, seen
                seq = turn.seq
            if decoded.error:
                self.counters.inc("tail.archive_bad")
                log.warning("tail: archive of %s, part %d: %s", topic, part, decoded.error)
                return True, seen
            if len(decoded.turns) < PART_TURNS:
                break
            part += 1
        return True, seen

    def _agreed(self, transcripts: TranscriptStore, topic: str) -> int:
        """The highest seq up to which the transcript holds the archive's turns (by the
        key of a turn at a part's end, or of the archive's last turn): 0 if none."""
        last = transcripts.last_seq(topic)
        part = part_of(last) if last else -1
        while part >= 0:
            data = self.archive.read(topic, part)
            turns = [] if data is None else decode_part(topic, part, data).turns
            below = [t for t in turns if t.seq <= last]
            if below:
                mine = transcripts.turns(topic, below[-1].seq - 1, 1)
                if mine and mine[0].ledger_key == below[-1].ledger_key:
                    return below[-1].seq
            part -= 1
        return 0


class ArchiveWork:
    """The archive's part in the LiveTailActor. It is a copy, never worth the live
    tail: whatever fails in it, the disk or a bug nobody foresaw, is counted and logged
    (once a minute), and the actor goes on."""

    def __init__(
        self, archive: TranscriptArchive, patterns: Sequence[re.Pattern[str]], counters: Counters
    ) -> None:
        self.out = ArchiveOut(archive, patterns, counters)
        self.into = ArchiveIn(archive, counters)
        self.counters = counters
        self.complaints = Complaints(counters)
        self.next_look = 0.0

    def tick(
        self, holding: bool, transcripts: TranscriptStore, buffer: LiveTailBuffer, now: float
    ) -> None:
        """The holder writes the archive; a standby takes it in and prunes its buffer."""
        look = now >= self.next_look
        if look:
            self.next_look = now + LOOK_MS
        if holding:
            if look:
                self._guarded(lambda: self.out.look(transcripts.last_seqs(), now), now)
            self._guarded(lambda: self.out.step(transcripts, now), now)
        elif look or self.into.more:
            self._guarded(lambda: self.into.step(transcripts, buffer, now), now)
            self._guarded(lambda: prune(buffer, transcripts, self.counters), now)

    def changed(self, topic: str, seq: int) -> None:
        """The holder added turn ``seq`` of ``topic``."""
        self.out.changed(topic, seq)

    def view(self) -> dict[str, Any]:
        return {"pending": len(self.out.pending)}

    def take_in_all(self, transcripts: TranscriptStore, buffer: LiveTailBuffer, now: float) -> None:
        """At a takeover, before the buffer's replay: the whole archive."""
        self._guarded(lambda: self.into.step(transcripts, buffer, now, budget=None), now)

    def begin(self, transcripts: TranscriptStore, now: float) -> None:
        """A term begins, after the replay: every part is checked."""
        self._guarded(lambda: self.out.begin(transcripts.last_seqs(), now), now)

    def _guarded(self, work: Callable[[], object], now: float) -> None:
        try:
            work()
        except Exception as exc:
            self.complaints(exc, now)


def _given(turn: TranscriptTurn) -> Callable[[], TranscriptTurn]:
    return lambda: turn


def prune(buffer: LiveTailBuffer, transcripts: TranscriptStore, counters: Counters) -> int:
    """Drop each topic's frames below the highest seq at which the transcript holds the
    same turn after the same turn (that frame is kept: the chain goes on from it)."""
    dropped = 0
    for topic, (head, _) in buffer.heads().items():
        seq = min(head, transcripts.last_seq(topic))
        if seq < 2:
            continue
        frame = buffer.frames(topic, seq - 1, 1)
        mine = transcripts.turns(topic, seq - 2, 2)
        if (
            len(frame) == 1
            and len(mine) == 2
            and frame[0].seq == seq
            and (mine[0].ledger_key, mine[1].ledger_key) == (frame[0].prev, frame[0].key)
        ):
            dropped += buffer.prune(topic, seq)
    if dropped:
        counters.inc("tail.pruned", dropped)
    return dropped
