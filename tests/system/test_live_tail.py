"""The live tail with real processes: machines on a real git remote, the bundled chat
service as the channel, the echo agent (whose reply names the number of earlier turns
of its topic, so a lost turn shows in the text).

- kill -9 of the holder under load: the transcript loss is measured, and it is at most
  the turns of the last flush interval before the kill.
- The holder's keys in the test's hands (the rogue, speaking the real wire at the
  holder's epoch once the holder is dead) stream its transcript to the standby with
  frames replayed, reordered and repeated: the standby's buffer ends up exactly the
  holder's transcript, sealed to the standby, and when it takes over the turn counts go
  on without a gap.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable

import pytest

from baton.channels.chat_server import ChatServer
from baton.core.live_tail import TailFrame, compile_redactions
from baton.demo.devmesh import Mesh
from baton.stores.identity_store import load_identity, load_public_identity
from baton.stores.transcript_sqlite import SqliteTranscriptStore
from baton.wire.tail_transport import LiveTailTransport, unseal
from tests.system.chat_kit import (
    FLUSH_MS,
    TOPICS,
    all_see_the_holder,
    answered,
    check_exactly_once,
    dump,
    failed_over,
    holder,
    loading,
    post,
    sends,
    start_mesh,
    turn_counts,
)
from tests.system.rogue import Rogue
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]


def test_kill_9_failover_loses_at_most_the_turns_of_the_last_flush(
    make_mesh: Callable[..., Mesh], chat: ChatServer
) -> None:
    mesh = start_mesh(make_mesh, chat)
    all_see_the_holder(mesh)
    try:
        with loading(chat, 200) as result:
            wait_for(lambda: len(sends(chat)) >= 60, 60, "replies flowing")
            victim = holder(mesh)
            assert victim is not None
            epoch = victim.status()["epoch"]
            killed_at = time.time()
            victim.signal_node(signal.SIGKILL)
            wait_for(lambda: failed_over(mesh, epoch), 90, "a holder of a newer epoch")
        posted = result["posted"]
        wait_for(lambda: answered(chat, set(posted)), 120, "every message answered")
    except BaseException:
        dump(mesh)
        raise
    check_exactly_once(chat, posted, mesh=mesh)
    loss = 0
    for topic in TOPICS:
        counts = turn_counts(chat, topic)
        gaps = [n - c for n, c in enumerate(counts)]
        assert gaps == sorted(gaps) and len(set(gaps)) <= 2, (topic, counts)  # one drop, once
        loss += gaps[-1]
    window = FLUSH_MS / 1000 + 1.0  # the flush interval, and time to commit and ack
    recent = [
        s
        for s in sends(chat)
        if s["outcome"] == "accepted" and killed_at - window <= s["time"] <= killed_at
    ]
    print(f"transcript loss {loss} turns; {len(recent)} replies in the last {window} s")
    assert loss <= len(recent)


def turns_in(path: str) -> int:
    """How many turns a running holder's transcripts hold (read only)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (n,) = db.execute("SELECT count(*) FROM turns").fetchone()
    return int(n)


def buffered(path: str) -> dict[str, list[tuple[int, str, bytes]]]:
    """A standby's buffer as (seq, key, box) per topic, read without a write lock."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT topic, seq, key, box FROM frames ORDER BY topic, seq")
        out: dict[str, list[tuple[int, str, bytes]]] = {}
        for topic, seq, key, box in rows:
            out.setdefault(topic, []).append((seq, key, bytes(box)))
    return out


def test_frames_replayed_reordered_and_repeated_leave_the_standby_buffer_exact(
    make_mesh: Callable[..., Mesh], chat: ChatServer
) -> None:
    # The rogue streams within one ttl (once bravo holds, it takes no more frames: a CI
    # run on a loaded host took longer than 8 s), and a long flush interval leaves the
    # standby behind.
    # The transcript archive off: this is about the buffer alone, which would otherwise
    # keep only what git lacks (test_the_archive_through_git_prunes_the_buffer_...).
    mesh = start_mesh(
        make_mesh,
        chat,
        ttl_ms=30000,
        BATON_LIVE_TAIL_FLUSH_MS="2500",
        BATON_TRANSCRIPT_ARCHIVE="off",
    )
    all_see_the_holder(mesh)
    alpha = holder(mesh)
    assert alpha is not None
    bravo = next(m for m in mesh.machines if m is not alpha)
    first = {post(chat, TOPICS[i % 5], f"m{i}") for i in range(20)}
    wait_for(lambda: answered(chat, first), 60, "the first replies")
    view = alpha.status()
    burst = {post(chat, TOPICS[i % 5], f"m{i}") for i in range(20, 30)}
    wait_for(lambda: answered(chat, burst), 60, "a burst answered")
    transcripts = str(alpha.paths.transcripts)  # its turns join just after the replies
    wait_for(lambda: turns_in(transcripts) == 30, 30, "the holder's 30 turns", 0.01)
    alpha.send_signal(signal.SIGKILL)  # supervisor and node, at once: nothing restarts it
    # its wire port is free once the processes are gone (the rogue binds it below)
    wait_for(lambda: not alpha.survivors(), 30, "alpha's processes to die")
    store = SqliteTranscriptStore(alpha.paths.transcripts)
    try:
        chain = {t: store.turns(t, 0, 1000) for t in store.last_seqs()}
    finally:
        store.close()
    assert sum(len(turns) for turns in chain.values()) == 30
    before = buffered(str(bravo.paths.tail_buffer))
    missing = 30 - sum(len(frames) for frames in before.values())
    rogue = Rogue(alpha, view["wire"], [bravo])
    try:
        recipient = load_public_identity(bravo.home).encryption_public
        tail = LiveTailTransport(rogue.id, rogue.send, compile_redactions(()), 1 << 18)
        frames = [
            TailFrame(t, n + 1, turn.ledger_key, prev, tail.seal(turn, recipient))
            for t, turns in chain.items()
            for n, (turn, prev) in enumerate(
                zip(turns, ["", *(x.ledger_key for x in turns[:-1])], strict=True)
            )
        ]
        heads = {t: len(turns) for t, turns in chain.items()}
        rng, to = random.Random(7), rogue.ids[bravo.name]
        # one frame per chain beyond a gap: refused and never kept, however far the
        # standby got before the holder died (on a slow disk it had every turn)
        beyond = [
            TailFrame(t, len(turns) + 2, "beyond", turns[-1].ledger_key, frames[0].box)
            for t, turns in chain.items()
        ]
        tail.flush(to, view["epoch"], beyond, heads)
        for _ in range(max(missing, 6) + 2):  # every round extends each chain by one at least
            wire = frames + rng.sample(frames, len(frames) // 3)  # repeated
            rng.shuffle(wire)  # and reordered
            for i in range(0, len(wire), 4):
                tail.flush(to, view["epoch"], wire[i : i + 4], heads)
        expected = {t: [turn.ledger_key for turn in turns] for t, turns in chain.items()}
        wait_for(
            lambda: (
                {t: [k for _, k, _ in f] for t, f in buffered(str(bravo.paths.tail_buffer)).items()}
                == expected
            ),
            20,
            "the standby's buffer to be the holder's transcript",
        )
    except BaseException:
        dump(mesh)
        raise
    finally:
        rogue.stop()
    key = load_identity(bravo.home).encryption_key
    for t, stored in buffered(str(bravo.paths.tail_buffer)).items():
        opened = [
            unseal(TailFrame(t, seq, k, "" if seq == 1 else "x", box), key)
            for seq, k, box in stored
        ]
        assert opened == chain[t]  # sealed to bravo, and exactly the holder's turns
    assert bravo.counter("tail.refused.not_holder") == 0  # all taken while alpha held
    assert bravo.counter("tail.frame.duplicate") > 0 and bravo.counter("tail.frame.refused") > 0
    print(f"the standby lacked {missing} of 30 turns when the holder died")
    wait_for(lambda: failed_over(mesh, view["epoch"]) is bravo, 60, "bravo to take over")
    after = {post(chat, t, "after") for t in TOPICS}
    wait_for(lambda: answered(chat, after), 60, "bravo answers")
    for t in TOPICS:  # no turn lost: each topic's count goes on from the holder's
        assert turn_counts(chat, t) == list(range(7)), (t, turn_counts(chat, t))


def test_the_archive_through_git_prunes_the_buffer_and_a_kill_9_loses_no_turn(
    make_mesh: Callable[..., Mesh], chat: ChatServer
) -> None:
    """The holder writes the transcripts into its state directory, redacted; git brings
    them to the standby, verified; the standby takes them in and keeps in its buffer only
    the last frame of each topic; after a kill -9 of the holder every count goes on."""
    mesh = start_mesh(make_mesh, chat, BATON_STATE_SYNC_MS="300")
    all_see_the_holder(mesh)
    alpha = holder(mesh)
    assert alpha is not None
    bravo = next(m for m in mesh.machines if m is not alpha)
    texts = [f"m{i}" for i in range(19)] + ["my password: hunter2"]
    first = {post(chat, TOPICS[i % 5], text) for i, text in enumerate(texts)}
    try:
        wait_for(lambda: answered(chat, first), 60, "the first replies")
        buffer = str(bravo.paths.tail_buffer)
        wait_for(
            lambda: (
                {t: len(f) for t, f in buffered(buffer).items()}
                == dict.fromkeys(buffered(buffer), 1)
                and len(buffered(buffer)) == 5
                and bravo.counter("tail.pruned") == 15
            ),
            90,
            "bravo's buffer pruned to the last frame of each topic",
        )
        archive = bravo.home / "state" / "transcripts"
        parts = sorted(archive.glob("*/000000.jsonl"))
        assert len(parts) == 5 and all(len(p.read_text().splitlines()) == 4 for p in parts)
        held = "".join(p.read_text() for p in parts)
        assert "hunter2" not in held and "my password: [redacted]" in held
        history = subprocess.run(
            ["git", f"--git-dir={mesh.root / 'lease.git'}", "log", "-p", "--all"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert "my password: [redacted]" in history and "hunter2" not in history
        epoch = alpha.status()["epoch"]
        alpha.send_signal(signal.SIGKILL)
        wait_for(lambda: failed_over(mesh, epoch) is bravo, 90, "bravo to take over")
        after = {post(chat, t, "after") for t in TOPICS}
        wait_for(lambda: answered(chat, after), 60, "bravo answers")
    except BaseException:
        dump(mesh)
        raise
    for t in TOPICS:  # no turn lost: each count goes on from the archive and the frame
        assert turn_counts(chat, t) == list(range(5)), (t, turn_counts(chat, t))
    assert bravo.counter("tail.archive_taken") >= 15
