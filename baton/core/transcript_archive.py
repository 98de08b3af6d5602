"""The transcript archive's format (sans-IO): where a topic's turns lie in the agent's
state directory and how a part of them is written and read back
(docs/DESIGN.md, "Transcript archive").

Theory of operation. The holder writes each topic's transcript into the state
directory, which StateSync commits, signs and pushes, so the standbys receive it
verified through git and their live-tail buffer need keep only what git does not have
yet. A topic is a directory ``transcripts/<name>`` (``topic_dir``: the topic with every
byte outside ``[A-Za-z0-9_-]`` written ``%XX``, so no name is ``.``, ``..``, hidden or
has a slash), holding its turns in parts of PART_TURNS: part ``p`` is
``<p as 6 digits>.jsonl`` with turns ``p * PART_TURNS + 1`` onwards, one JSON object
(``TranscriptTurn.to_json``, keys sorted) per line. Parts, not one file per topic: git
stores a new blob of a file at every commit that changes it, so a turn rewrites one
part of at most PART_TURNS turns, never the whole history, and a long topic never
reaches StateSync's 16 MiB file limit.

Invariants:
- ``decode_part(t, p, encode_part(turns))`` gives ``turns`` back when they are turns of
  ``t`` numbered from part ``p``'s first seq, one after another.
- ``decode_part`` never raises on bytes: it returns the turns up to the first line that
  is not the next turn of that topic in that part (bad JSON, wrong fields, another
  topic, a seq out of order, an unterminated last line, a topic or ledger key longer
  than a live-tail frame carries), with what was wrong.
- ``topic_of(topic_dir(t)) == t`` for every topic; ``topic_of`` refuses (None) any
  name ``topic_dir`` does not make.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from baton.core.errors import TranscriptRefused
from baton.core.live_tail import MAX_KEY, MAX_TOPIC
from baton.core.safejson import loads
from baton.core.transcript import TranscriptTurn

DIR = "transcripts"
PART_TURNS = 100
MAX_PART_BYTES = 16 * 1024 * 1024  # StateSync's file limit: a bigger part is not synced
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_PART = re.compile(r"([0-9]{6})\.jsonl")
_ESCAPED = re.compile(r"(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+")


def topic_dir(topic: str) -> str:
    """The directory name of ``topic``'s archive."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in topic.encode("utf-8"))


def topic_of(name: str) -> str | None:
    """The topic whose directory is ``name``; None when no topic's is."""
    if not _ESCAPED.fullmatch(name):
        return None
    raw = bytearray()
    i = 0
    while i < len(name):
        if name[i] == "%":
            raw.append(int(name[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(ord(name[i]))
            i += 1
    try:
        topic = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return topic if topic and topic_dir(topic) == name else None


def part_of(seq: int) -> int:
    """The part that holds turn ``seq``."""
    return (seq - 1) // PART_TURNS


def first_seq(part: int) -> int:
    return part * PART_TURNS + 1


def part_name(part: int) -> str:
    return f"{part:06d}.jsonl"


def part_index(name: str) -> int | None:
    """The part a file name is; None when it is not a part's."""
    found = _PART.fullmatch(name)
    return None if found is None else int(found.group(1))


def encode_line(turn: TranscriptTurn) -> bytes:
    """A turn's line: its JSON, keys sorted, UTF-8, with its newline."""
    return (json.dumps(turn.to_json(), sort_keys=True, ensure_ascii=False) + "\n").encode()


def encode_part(turns: Sequence[TranscriptTurn]) -> bytes:
    """The part's file: one turn per line."""
    return b"".join(encode_line(t) for t in turns)


@dataclass(frozen=True)
class Decoded:
    """The turns a part's bytes hold, up to the first that is not the next; ``error``
    says what stopped the reading there ("" when every line was a turn)."""

    turns: tuple[TranscriptTurn, ...]
    error: str = ""


def decode_part(topic: str, part: int, data: bytes) -> Decoded:
    """The turns of ``topic`` in part ``part``'s ``data``, strictly in order."""
    turns: list[TranscriptTurn] = []
    if len(data) > MAX_PART_BYTES:
        return Decoded((), f"larger than {MAX_PART_BYTES} bytes")
    body, newline, rest = data.rpartition(b"\n")
    lines = body.split(b"\n") if newline else []
    expected = first_seq(part)
    for number, line in enumerate(lines, start=1):
        if len(turns) == PART_TURNS:
            return Decoded(tuple(turns), f"line {number}: more than {PART_TURNS} turns")
        try:
            turn = TranscriptTurn.from_json(loads(line.decode("utf-8")))
        except (ValueError, TranscriptRefused) as exc:  # UnicodeDecodeError is a ValueError
            return Decoded(tuple(turns), f"line {number}: {exc}")
        if turn.topic != topic or turn.seq != expected:
            return Decoded(tuple(turns), f"line {number}: not turn {expected} of {topic!r}")
        if len(turn.topic) > MAX_TOPIC or len(turn.ledger_key) > MAX_KEY:
            return Decoded(tuple(turns), f"line {number}: a topic or key no frame can carry")
        turns.append(turn)
        expected += 1
    if rest:
        return Decoded(tuple(turns), f"line {len(lines) + 1}: not terminated")
    return Decoded(tuple(turns))


class TranscriptArchive(Protocol):
    """The archive's files, a port. Adapter: FileTranscriptArchive
    (baton.stores.transcript_archive, ``state/transcripts``); no twin: the tests use the
    real files under a temporary directory. Errors: ArchiveError for every failure of
    the file system; a missing part reads as None."""

    def topics(self) -> list[str]:
        """Every topic with a directory in the archive, sorted."""
        ...

    def parts(self, topic: str) -> list[int]:
        """The parts ``topic`` has, ascending."""
        ...

    def signature(self, topic: str) -> tuple[int, ...]:
        """Changes whenever a part of ``topic`` is added, removed or rewritten."""
        ...

    def read(self, topic: str, part: int) -> bytes | None:
        """The part's bytes (at most MAX_PART_BYTES + 1 of them); None when missing."""
        ...

    def write(self, topic: str, part: int, data: bytes) -> None:
        """Replace the part with ``data`` whole."""
        ...

    def remove(self, topic: str, part: int) -> None:
        """Remove the part (nothing to do when it is missing)."""
        ...
