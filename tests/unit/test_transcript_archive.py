"""The transcript archive's format (baton.core.transcript_archive) and its files
(baton.stores.transcript_archive): names every topic can have and nothing else, parts
that read back exactly, and bytes that are not a part refused up to the first bad line,
never raised; the files replaced whole, never through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.errors import ArchiveError
from baton.core.transcript import TranscriptTurn
from baton.core.transcript_archive import (
    MAX_PART_BYTES,
    PART_TURNS,
    decode_part,
    encode_line,
    encode_part,
    first_seq,
    part_index,
    part_name,
    part_of,
    topic_dir,
    topic_of,
)
from baton.stores.transcript_archive import FileTranscriptArchive

pytestmark = pytest.mark.timeout(60)


def turn(seq: int, topic: str = "-100/7", text: str = "hi") -> TranscriptTurn:
    return TranscriptTurn(topic, seq, f"c:{topic}:{seq}", seq, text, (f"re {text}",), 1.5 * seq)


@given(st.text(min_size=1, max_size=40))
def test_every_topic_has_a_plain_directory_name_that_names_it_alone(topic: str) -> None:
    try:
        topic.encode("utf-8")
    except UnicodeEncodeError:
        return  # not a topic: a transcript turn refuses it
    name = topic_dir(topic)
    assert topic_of(name) == topic
    assert "/" not in name and not name.startswith(".") and name not in ("", ".", "..")


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".git", "a%2f", "a%", "a%4", "%61", "a b", "%C3", "a%2Fb%"]
)
def test_names_no_topic_makes_are_not_topics(name: str) -> None:
    assert topic_of(name) is None  # lower-case hex, "a" escaped, bad UTF-8 included


def test_parts_hold_a_hundred_turns_each() -> None:
    assert [part_of(s) for s in (1, 100, 101, 250)] == [0, 0, 1, 2]
    assert first_seq(2) == 2 * PART_TURNS + 1 and part_name(3) == "000003.jsonl"
    assert part_index("000003.jsonl") == 3
    assert [part_index(n) for n in ("3.jsonl", "000003.json", ".000003.jsonl.tmp-1")] == [
        None,
        None,
        None,
    ]


def test_a_part_reads_back_exactly() -> None:
    turns = [turn(s, text='ünïcode \u2028 and "quotes"\n') for s in range(101, 151)]
    decoded = decode_part("-100/7", 1, encode_part(turns))
    assert decoded.turns == tuple(turns) and decoded.error == ""
    assert decode_part("-100/7", 0, b"") == decode_part("-100/7", 0, b"")  # empty: no turns
    assert decode_part("-100/7", 0, b"").turns == ()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"{not json}\n", "Expecting property name"),
        (b'{"topic": 1}\n', "missing fields"),
        (b"[" * 100_000 + b"\n", "deeper"),  # refused, never a RecursionError
        (b"\xff\xfe\n", "utf-8"),
        (b"\n", "Expecting value"),
        (b"[]\n", "expected an object"),
        (  # an integer past a float's range: refused, never an OverflowError
            b'{"at_ms": 1' + b"0" * 400 + b', "ledger_key": "c:-100/7:3", "message_id": 3, '
            b'"replies": [], "seq": 3, "text": "x", "topic": "-100/7"}\n',
            "at_ms",
        ),
        (  # a ledger key no live-tail frame could carry on to a standby
            encode_line(TranscriptTurn("-100/7", 3, "k" * 257, 3, "x", (), 1.0)),
            "no frame can carry",
        ),
    ],
)
def test_bytes_that_are_not_turns_are_refused_at_the_first_bad_line(data: bytes, why: str) -> None:
    good = encode_part([turn(1), turn(2)])
    decoded = decode_part("-100/7", 0, good + data + encode_part([turn(3)]))
    assert decoded.turns == (turn(1), turn(2))
    assert decoded.error.startswith("line 3: ") and why in decoded.error


def test_turns_out_of_place_end_the_reading() -> None:
    other_topic = encode_part([turn(1), turn(2, topic="other")])
    assert len(decode_part("-100/7", 0, other_topic).turns) == 1
    gap = encode_part([turn(1), turn(3)])
    assert len(decode_part("-100/7", 0, gap).turns) == 1
    wrong_part = encode_part([turn(1)])
    assert decode_part("-100/7", 1, wrong_part).turns == ()
    unterminated = encode_part([turn(1), turn(2)])[:-1]
    decoded = decode_part("-100/7", 0, unterminated)
    assert len(decoded.turns) == 1 and "not terminated" in decoded.error
    too_many = encode_part([turn(s) for s in range(1, PART_TURNS + 2)])
    decoded = decode_part("-100/7", 0, too_many)
    assert len(decoded.turns) == PART_TURNS and "more than" in decoded.error
    huge = b" " * (MAX_PART_BYTES + 1)
    assert "larger than" in decode_part("-100/7", 0, huge).error


def test_the_files_are_replaced_whole_and_named_by_topic(tmp_path: Path) -> None:
    archive = FileTranscriptArchive(tmp_path)
    assert archive.topics() == [] and archive.read("t/1", 0) is None
    archive.write("t/1", 0, b"one\n")
    archive.write("t/1", 2, b"three\n")
    archive.write("t/1", 0, b"one again\n")
    assert archive.topics() == ["t/1"] and archive.parts("t/1") == [0, 2]
    assert archive.read("t/1", 0) == b"one again\n"
    assert (tmp_path / "transcripts" / "t%2F1" / "000000.jsonl").exists()
    assert (tmp_path / "transcripts" / ".gitignore").read_bytes() == b".*.tmp-*\n"
    sign = archive.signature("t/1")
    archive.write("t/1", 2, b"three, longer\n")
    assert archive.signature("t/1") != sign
    archive.remove("t/1", 2)
    archive.remove("t/1", 9)  # missing: nothing to do
    assert archive.parts("t/1") == [0]
    mode = (tmp_path / "transcripts" / "t%2F1" / "000000.jsonl").stat().st_mode & 0o777
    assert mode == 0o600
    # what is not the archive's is not listed: a stray file, a dot directory, a temp file
    (tmp_path / "transcripts" / "notes.txt").write_text("x")
    (tmp_path / "transcripts" / ".git").mkdir()
    (tmp_path / "transcripts" / "t%2F1" / ".000001.jsonl.tmp-1-ab").write_text("x")
    assert archive.topics() == ["t/1"] and archive.parts("t/1") == [0]


def test_links_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not the archive's")
    archive = FileTranscriptArchive(tmp_path / "state")
    archive.write("t", 0, b"one\n")
    part = tmp_path / "state" / "transcripts" / "t" / "000001.jsonl"
    part.symlink_to(outside / "secret")
    with pytest.raises(ArchiveError, match="symbolic link"):
        archive.read("t", 1)
    archive.write("t", 1, b"mine\n")  # replaces the link, never writes through it
    assert (outside / "secret").read_text() == "not the archive's" and not part.is_symlink()
    os.symlink(outside, tmp_path / "state" / "transcripts" / "u")
    assert archive.topics() == ["t"]  # a linked directory is no topic
    with pytest.raises(ArchiveError, match="symbolic link"):
        archive.write("u", 0, b"x\n")
    with pytest.raises(ArchiveError, match="symbolic link"):
        archive.parts("u")
    (outside / "000000.jsonl").write_text("outside the archive\n")
    for reach in (lambda: archive.read("u", 0), lambda: archive.remove("u", 0)):
        with pytest.raises(ArchiveError, match="symbolic link"):
            reach()  # a linked topic directory is not read nor removed through
    assert (outside / "000000.jsonl").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["000000.jsonl", "secret"]


def test_a_directory_that_cannot_be_read_is_an_archive_error(tmp_path: Path) -> None:
    archive = FileTranscriptArchive(tmp_path)
    (tmp_path / "transcripts").write_text("a file where the directory goes")
    with pytest.raises(ArchiveError):
        archive.topics()
    with pytest.raises(ArchiveError):
        archive.write("t", 0, b"x\n")
