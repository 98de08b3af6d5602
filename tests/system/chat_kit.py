"""Helpers of the system tests that run a mesh against the bundled chat service: its
API (post, messages, the raw send log), who is awake, the exactly-once judge, a steady
load, and the nodes' logs for a failure."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import SYNC_POLL_S, Machine, Mesh
from baton.demo.verdict import ambiguous_sends
from tests.waits import wait_for

TTL_MS = 2000
T0 = time.monotonic()
TOPICS = [f"t{i}" for i in range(5)]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(chat: ChatServer, topic: str, text: str) -> int:
    return int(chat.api(f"/api/topics/{topic}/messages", {"text": text})["message_id"])


def topic_messages(chat: ChatServer, topic: str) -> list[dict[str, Any]]:
    return list(chat.api(f"/api/topics/{topic}/messages")["messages"])


def sends(chat: ChatServer) -> list[dict[str, Any]]:
    return list(chat.api("/api/sends")["sends"])


def replies(chat: ChatServer) -> int:
    """Replies the chat accepted so far."""
    return sum(1 for s in sends(chat) if s["outcome"] == "accepted")


def holder(mesh: Mesh, but: Machine | None = None, after: int = 0) -> Machine | None:
    """The machine that says it is awake at an epoch above ``after`` (asking every one
    but ``but``, which may be paused and would not answer)."""
    for m in mesh.machines:
        if m is but:
            continue
        try:
            view = m.status()
        except Exception:  # a node being restarted does not answer
            continue
        if view["role"] == "awake" and view["epoch"] > after:
            return m
    return None


def failed_over(mesh: Mesh, epoch: int) -> Machine | None:
    """A holder of a newer epoch than ``epoch``: after a kill -9 that may be the victim
    itself, restarted by its supervisor (a standby like any other once it is back)."""
    return holder(mesh, after=epoch)


def start_mesh(
    make_mesh: Callable[..., Mesh],
    chat: ChatServer,
    agent: str = "echo",
    names: tuple[str, ...] = ("alpha", "bravo"),
    ttl_ms: int = TTL_MS,
    *,
    pythons: dict[str, str] | None = None,
    **env: str,
) -> Mesh:
    """A mesh answering ``chat``: as the bundled service when it fences, as Telegram
    when it is in telegram mode (then it forgives nothing). ``pythons``: the Python (so
    the installed baton) a machine runs, by name (tests/system/builds.py)."""
    scheme = "telegram" if chat.mode == "telegram" else "local"
    env = {**chat.machine_env(), **env}
    mesh = make_mesh(
        len(names),
        names=list(names),
        lease_ttl_ms=ttl_ms,
        init_args=("--channel", f"{scheme}:{chat.url}", "--agent", agent),
        env=env,
        up=not pythons,
    )
    if pythons:
        for m in mesh.machines:
            m.python = pythons.get(m.name, m.python)
        mesh.pair_up()
    wait_for(mesh.synced_holder, 60, "a holder with every standby in sync", SYNC_POLL_S)
    return mesh


def answered(chat: ChatServer, expected: set[int]) -> bool:
    accepted = {s["reply_to"] for s in sends(chat) if s["outcome"] == "accepted"}
    return expected <= accepted


def reported_ambiguous(mesh: Mesh) -> set[int]:
    """The messages the machines reported an ambiguous send for (their logs)."""
    return ambiguous_sends(p for m in mesh.machines for p in m.paths.logs_dir.glob("*.log*"))


def check_exactly_once(
    chat: ChatServer,
    posted: dict[int, tuple[str, str]],
    reported: set[int] | None = None,
    mesh: Mesh | None = None,
    *,
    topics: list[str] = TOPICS,
    commands: frozenset[int] = frozenset(),
) -> Counter[str]:
    """Every posted message has exactly one accepted reply, in its topic's order; the
    outcomes of every send attempt are returned (stale and repeat ones are allowed). A
    double is allowed only for a message in ``reported``: a send in flight at a crash or
    pause that its new holder reported as ambiguous (a sink that cannot say). Every
    reply echoes its message, but the ones to ``commands`` (answered by baton itself)."""
    log = sends(chat)
    accepted = [s for s in log if s["outcome"] == "accepted"]
    per_message = Counter(s["reply_to"] for s in accepted)
    missing = sorted(set(posted) - set(per_message))
    doubles = sorted(m for m, n in per_message.items() if n > 1)
    doubled = [m for m in doubles if m not in (reported or set())]
    print(f"doubles: {len(doubles)}, reported as ambiguous: {len(doubles) - len(doubled)}")
    assert not missing, f"{len(missing)} messages never answered, e.g. {missing[:5]}"
    assert not doubled, f"{len(doubled)} messages answered twice, e.g. {doubled[:5]}"
    assert set(per_message) == set(posted), "a reply to a message nobody posted"
    for topic in topics:
        messages = topic_messages(chat, topic)
        replies = [m["reply_to"] for m in messages if m["from"] == "bot"]
        replies = [r for n, r in enumerate(replies) if r not in replies[:n]]  # first ones
        assert replies == sorted(replies), out_of_order(topic, replies, log, mesh)
        for m in messages:
            if m["from"] == "bot" and m["reply_to"] not in commands:
                assert m["text"].startswith(f"echo: {posted[m['reply_to']][1]} ")
    return Counter(s["outcome"] for s in log)


def out_of_order(
    topic: str, replies: list[int], log: list[dict[str, Any]], mesh: Mesh | None = None
) -> str:
    """Which first replies in ``topic`` came before an earlier message's, every send
    attempt for the messages around them (epoch, outcome), to tell who sent what, and
    what each machine's ledger holds of the pair (when and how each recorded it)."""
    i = next(n for n in range(1, len(replies)) if replies[n] < replies[n - 1])
    around = set(replies[max(0, i - 3) : i + 3])
    tried = [s for s in log if s.get("reply_to") in around]
    held = ledger_docs(mesh, (replies[i - 1], replies[i])) if mesh else {}
    return f"replies in {topic} out of order at {replies[i - 1]} > {replies[i]}: {tried}; {held}"


def ledger_docs(mesh: Mesh, message_ids: tuple[int, ...]) -> dict[str, list[str]]:
    """Each machine's ledger rows for these messages (read beside the running node)."""
    found: dict[str, list[str]] = {}
    marks = ",".join("?" * len(message_ids))
    for m in mesh.machines:
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{m.paths.ledger}?mode=ro", uri=True, timeout=10)
            ) as db:
                rows = db.execute(
                    f"SELECT doc FROM entries WHERE message_id IN ({marks})", message_ids
                ).fetchall()
            found[m.name] = [doc for (doc,) in rows]
        except sqlite3.Error as exc:
            found[m.name] = [f"unreadable: {exc}"]
    return found


def load(
    chat: ChatServer, n: int, stop: threading.Event, topics: list[str] = TOPICS
) -> dict[int, tuple[str, str]]:
    """Post n messages round-robin over ``topics`` at about 25 a second, so the faults
    (one every few seconds) land while messages flow."""
    posted: dict[int, tuple[str, str]] = {}
    for i in range(n):
        if stop.is_set():
            break
        topic = topics[i % len(topics)]
        text = f"m{i}"
        posted[post(chat, topic, text)] = (topic, text)
        stop.wait(0.04)
    return posted


# the lines that say where a message went or why a standby fell behind: a term, the
# lease, a handoff, the in-sync set, a run moved or taken back, a refusal, a replay and
# its loose turns, anything warned of
TELLING = re.compile(
    r'"level": "(warning|error)"|delivery: (holding|standing)|taken back|moves from|'
    r"refused|restarted|replayed|loose|heard after|not pulled|sync:|lease:|handoff|"
    r"wakeup|out of sync|catching up"
)


def dump(mesh: Mesh) -> None:
    """Where each machine is, compactly first (a CI report may show only the start of
    what a test printed): its status's role, epoch, the topics delivery waits on and the
    pool's runs in flight, then its telling log lines; then the tail of every log
    (printed: pytest shows it on failure)."""
    for m in mesh.machines:
        print(f"=== {m.name}: {where(m)}")
        path = m.paths.logs_dir / "node.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        print(*[short(line) for line in lines if TELLING.search(line)][-25:], sep="\n")
    for m in mesh.machines:
        for name in ("node.log", "supervisor.out", "supervisor.log"):
            path = m.paths.logs_dir / name
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-80:]
                print(f"--- {m.name} {name} ---", *lines, sep="\n")


def where(m: Machine) -> str:
    """``m``'s status in a line: its role, epoch, what delivery and the pool wait on."""
    try:
        v = m.status(timeout=5)
    except Exception as exc:  # dead, paused, or its API gone: say so and go on
        return f"no status ({type(exc).__name__})"
    d, pool = v.get("delivery") or {}, (v.get("pool") or {}).get("routing") or {}
    seen = {k: d.get(k) for k in ("term", "working", "waiting_on", "ledger")}
    return f"{v.get('role')} epoch {v.get('epoch')} {seen} pool {pool}"


def short(line: str) -> str:
    """A JSON log line as time, logger and message."""
    try:
        doc = json.loads(line)
        return f"{doc['ts'][11:23]} {doc['logger']} {doc['msg'][:300]}"
    except (ValueError, KeyError, TypeError):
        return line[:300]


FLUSH_MS = 500  # the default for the tests' ttl of 2000 ms: min(1000, ttl // 4)
COUNT = re.compile(r"\(earlier turns: (\d+)\)$")


def turn_counts(chat: ChatServer, topic: str) -> list[int]:
    """The earlier-turn count each reply of ``topic`` names, in order."""
    texts = [m["text"] for m in topic_messages(chat, topic) if m["from"] == "bot"]
    counts = []
    for text in texts:
        found = COUNT.search(text)
        assert found, text
        counts.append(int(found.group(1)))
    return counts


@contextmanager
def loading(
    chat: ChatServer, n: int, until_done: bool = False, topics: list[str] = TOPICS
) -> Iterator[dict[str, Any]]:
    """A steady load of ``n`` messages (25 a second) in a thread, joined on the way out
    (``until_done``: stopped there, at most ``n``); its posts are in the yielded dict's
    "posted" once it ends."""
    stop = threading.Event()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(posted=load(chat, n, stop, topics)))
    thread.start()
    try:
        yield result
        if until_done:
            stop.set()
        thread.join(120)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def all_see_the_holder(mesh: Mesh) -> None:
    for m in mesh.machines:
        wait_for(lambda m=m: m.status()["holder"] is not None, 30, f"{m.name} to see a holder")  # type: ignore[misc]
