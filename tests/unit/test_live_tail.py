"""The live tail's rules: frames, the standby's decision, the holder's following of each
standby, redaction; and a property: whatever the link does to the frames and acks (drop,
repeat, reorder), and whatever chain the standby followed before, once the link behaves
the standby's buffer is exactly the holder's chain."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.core.errors import TailRefused
from baton.core.live_tail import (
    DEFAULT_REDACTIONS,
    REDACTED,
    Follow,
    FrameResult,
    TailFrame,
    acked,
    compile_redactions,
    decide_frame,
    match_point,
    redact,
    start_of,
)
from baton.stores.tail_memory import MemoryLiveTailBuffer

R = FrameResult


def test_a_frame_must_be_well_formed() -> None:
    TailFrame("1/0", 1, "k1", "", b"box")
    TailFrame("1/0", 2, "k2", "k1", b"box")
    for bad in (
        dict(seq=0),
        dict(seq=True),
        dict(seq=2, prev=""),
        dict(prev="k0"),
        dict(topic=""),
        dict(key=""),
        dict(topic="t" * 65),
        dict(box=b""),
        dict(box="text"),
        dict(key=7),
    ):
        fields = {"topic": "1/0", "seq": 1, "key": "k1", "prev": "", "box": b"box", **bad}
        with pytest.raises(TailRefused):
            TailFrame(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "prev, held, seq, result",
    [
        (None, None, 1, R.ADDED),
        (None, ("k1", ""), 1, R.DUPLICATE),
        (None, ("x1", ""), 1, R.REPLACED),
        ("k1", None, 2, R.ADDED),
        ("k1", ("k2", "k1"), 2, R.DUPLICATE),
        ("k1", ("x2", "k1"), 2, R.REPLACED),
        ("k1", ("k2", "x1"), 2, R.REPLACED),  # the same message after another turn
        (None, None, 2, R.REFUSED),  # a gap
        ("x1", None, 2, R.REFUSED),  # another chain
        ("x1", ("k2", "k1"), 2, R.REFUSED),
    ],
)
def test_decide_frame(prev: str | None, held: tuple[str, str] | None, seq: int, result: R) -> None:
    frame = TailFrame("1/0", seq, f"k{seq}", "" if seq == 1 else f"k{seq - 1}", b"b")
    assert decide_frame(prev, held, frame) is result


def test_start_of_probes_an_unknown_standby_with_the_head() -> None:
    assert start_of(None, 0) is None
    assert start_of(None, 7) == 7
    assert start_of(Follow(3, 4, 0), 7) == 4
    assert start_of(Follow(7, 8, 0), 7) is None  # caught up


def test_acked_confirms_a_matching_key_and_probes_back_on_a_mismatch() -> None:
    assert acked(None, 0, "", None, 9) == Follow(0, 1, 0)
    assert acked(None, 5, "k5", "k5", 9) == Follow(5, 6, 0)
    first = acked(None, 5, "x5", "k5", 9)
    assert first == Follow(None, 5, 1)
    second = acked(first, 5, "x5", "k5", 9)
    assert second == Follow(None, 4, 2)
    assert acked(second, 5, "x5", "k5", 9) == Follow(None, 2, 3)
    assert acked(Follow(None, 1, 9), 5, "x5", "k5", 9).start == 1  # never below 1
    assert acked(None, 12, "x12", None, 9) == Follow(None, 9, 1)  # beyond the head
    assert acked(second, 6, "k6", "k6", 9) == Follow(6, 7, 0)  # a match resets
    assert acked(Follow(6, 7, 0), 4, "k4", "k4", 9) == Follow(6, 7, 0)  # a late ack


def test_match_point_prefers_what_the_flush_confirmed() -> None:
    assert match_point(None, None, None) == (0, "")
    assert match_point(None, None, (9, "x9")) == (9, "x9")
    assert match_point(4, "k4", (9, "x9")) == (4, "k4")
    assert match_point(4, None, (3, "k3")) == (3, "k3")  # cut since by a lower frame


def test_redact_hides_secrets_and_keeps_the_rest() -> None:
    patterns = compile_redactions(DEFAULT_REDACTIONS)
    text = (
        "my key is sk-abcdefghijklmnopqrstuv and password: hunter2!\n"
        "bot 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq, aws AKIAIOSFODNN7EXAMPLE\n"
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----"
    )
    out = redact(text, patterns)
    for secret in ("sk-abc", "hunter2", "AAHdq", "AKIAIOSF", "b3BlbnNzaC1rZXk"):
        assert secret not in out
    assert out.startswith("my key is " + REDACTED) and f"password: {REDACTED}" in out
    assert redact("nothing to see here", patterns) == "nothing to see here"
    assert redact("anything", ()) == "anything"


# --- the property -------------------------------------------------------------------

TOPIC = "1/0"
LIMIT = 8


def frames_from(chain: list[str], start: int | None) -> list[TailFrame]:
    if start is None:
        return []
    end = min(len(chain), start + LIMIT - 1)
    return [
        TailFrame(TOPIC, s, chain[s - 1], chain[s - 2] if s > 1 else "", f"box-{s}".encode())
        for s in range(start, end + 1)
    ]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_lossy_stream_ends_with_the_holders_chain(data: st.DataObject) -> None:
    head = data.draw(st.integers(1, 40), "head")
    shared = data.draw(st.integers(0, head), "shared")
    extra = data.draw(st.integers(0, 30), "extra")
    chain = [f"k{i}" for i in range(1, head + 1)]
    buf = MemoryLiveTailBuffer()
    other = chain[:shared] + [f"x{i}" for i in range(shared + 1, shared + extra + 1)]
    for f in frames_from(other, 1) + [
        TailFrame(TOPIC, s, other[s - 1], other[s - 2] if s > 1 else "", b"old")
        for s in range(LIMIT + 1, len(other) + 1)
    ]:
        buf.take(f, None)
    follow: Follow | None = None
    for rnd in range(60):
        lossy = rnd < 30
        frames = frames_from(chain, start_of(follow, len(chain)))
        if lossy and frames:
            frames = data.draw(st.permutations(frames), "order")
            frames = [f for f in frames if data.draw(st.booleans(), "keep")]
            frames += (
                data.draw(st.lists(st.sampled_from(frames), max_size=3), "dups") if frames else []
            )
        taken = None
        for f in frames:
            if buf.take(f, len(chain)) is not R.REFUSED:
                taken = max(taken or 0, f.seq)
        if not (lossy and data.draw(st.booleans(), "ack lost")):
            held = buf.frames(TOPIC, taken - 1, 1) if taken else []
            at = held[0].key if held and held[0].seq == taken else None
            n, key = match_point(taken, at, buf.heads().get(TOPIC))
            mine = chain[n - 1] if 1 <= n <= len(chain) else None
            follow = acked(follow, n, key, mine, len(chain))
        if rnd < 20 and data.draw(st.booleans(), "new turn"):
            chain.append(f"k{len(chain) + 1}")
    assert [f.key for f in buf.frames(TOPIC, 0, 1000)] == chain
    assert follow is not None and follow.confirmed == len(chain)
