"""The pool's part of real nodes (issue 20, first increments): with a lease store every
node runs a PoolActor, whose view status shows: the holder's role "holder", the others'
"mirror", the pool off until it is turned on; `baton pool enable` turns it on on the
awake machine alone, GET /pool answers 503 until then, and every member mirrors it;
after a kill -9 of the holder the new holder's pool says so, still on."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import Machine, Mesh
from baton.node.client import NodeClient
from tests.system.chat_kit import (
    COUNT,
    TTL_MS,
    answered,
    check_exactly_once,
    dump,
    failed_over,
    holder,
    loading,
    post,
    replies,
    reported_ambiguous,
    start_mesh,
    topic_messages,
)
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]


def test_every_node_of_a_lease_mesh_runs_the_pool_and_status_shows_its_role(
    make_mesh: Callable[..., Mesh],
) -> None:
    mesh = make_mesh(2, names=["alpha", "bravo"], lease_ttl_ms=3000)

    def roles() -> dict[str, str] | None:
        views = {m.name: m.status() for m in mesh.machines}
        if any(v["pool"] is None for v in views.values()):
            return None
        found = {n: v["pool"]["role"] for n, v in views.items()}
        return found if sorted(found.values()) == ["holder", "mirror"] else None

    found = wait_for(roles, 60, "one pool holder and one mirror")
    holder = next(m for m in mesh.machines if found[m.name] == "holder")
    other = next(m for m in mesh.machines if m is not holder)
    view = holder.status()["pool"]
    assert view["enabled"] is False and view["pins"] == 0 and view["placements"] == 0
    assert pool_route(holder) == (503, "pool_disabled")
    assert holder.json("pool", "status") == {**view}
    refused = other.baton("pool", "enable", "--json", check=False)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"] == "not_holder"
    assert other.status()["pool"]["enabled"] is False
    on = holder.json("pool", "enable")
    assert on["enabled"] is True and on["role"] == "holder"
    assert pool_route(holder)[0] == 200
    wait_for(lambda: other.status()["pool"]["enabled"], 30, "the mirror to take it")
    holder.send_signal(signal.SIGKILL)
    wait_for(lambda: other.status()["pool"]["role"] == "holder", 60, "the new holder's pool")
    assert other.json("pool", "status")["enabled"] is True
    off = other.json("pool", "disable")
    assert off["enabled"] is False and off["term"] > on["term"]


def pool_route(m: Machine) -> tuple[int, str | None]:
    """GET /pool on ``m``: the HTTP status and the error code."""
    client = NodeClient(m.home)
    request = urllib.request.Request(
        client.info["http"] + "/pool", headers={"Authorization": f"Bearer {client.token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["error"]


POOL_TOPICS = [f"p{i}" for i in range(8)]
ON = re.compile(r" on (\w+) \(earlier turns: \d+\)$")


def test_the_pool_spreads_eight_topics_over_three_machines_and_a_move_in_the_chat_moves_one(
    make_mesh: Callable[..., Mesh], sink: ChatServer
) -> None:
    """Pool on, 3 machines, a steady load over 8 topics, at both sinks: every topic's
    agent runs on some machine, all three run some; "move this to charlie" in one topic
    is answered by baton, and that topic's later messages run on charlie; every message
    answered once, in order, with the turn count going on."""
    chat = sink
    agent = "python:tests.system.agents:where"
    mesh = start_mesh(make_mesh, chat, agent, names=("alpha", "bravo", "charlie"))
    awake = holder(mesh)
    assert awake is not None
    assert awake.json("pool", "enable")["enabled"] is True
    for m in mesh.machines:
        wait_for(lambda m=m: m.status()["pool"]["enabled"], 30, f"{m.name} to mirror it")  # type: ignore[misc]
    try:
        with loading(chat, 160, topics=POOL_TOPICS) as result:
            wait_for(lambda: replies(chat) >= 40, 90, "40 replies")
            command = post(chat, "p0", "move this to charlie")
        posted = {**result["posted"], command: ("p0", "move this to charlie")}
        wait_for(lambda: answered(chat, set(posted)), 120, "every message answered")
    except BaseException:
        dump(mesh)
        raise
    check_exactly_once(chat, posted, mesh=mesh, topics=POOL_TOPICS, commands=frozenset({command}))
    ran: dict[str, set[str]] = {}
    for topic in POOL_TOPICS:
        counts = turn_counts_of(chat, topic)
        assert counts == list(range(len(counts))), (topic, counts)
        for m in topic_messages(chat, topic):
            if m["from"] == "bot" and (found := ON.search(m["text"])):
                ran.setdefault(topic, set()).add(found.group(1))
    assert set().union(*ran.values()) == {"alpha", "bravo", "charlie"}, ran
    said = [m for m in topic_messages(chat, "p0") if m["from"] == "bot"]
    at = next(i for i, m in enumerate(said) if m["reply_to"] == command)
    assert "Moving this topic to charlie" in said[at]["text"], said[at]
    after = [ON.search(m["text"]) for m in said[at + 1 :]]
    assert after and all(f is not None and f.group(1) == "charlie" for f in after), said[at:]
    assert awake.counter("pool.commands") == 1


def turn_counts_of(chat: ChatServer, topic: str) -> list[int]:
    """The earlier-turn count of each echo in ``topic`` (baton's own answers have none),
    counting a command and its answer as a turn too."""
    counts = []
    for m in topic_messages(chat, topic):
        if m["from"] == "bot" and (found := COUNT.search(m["text"])):
            counts.append(int(found.group(1)))
        elif m["from"] == "bot":
            counts.append(counts[-1] + 1 if counts else 0)
    return counts


def test_owners_killed_and_paused_and_the_holder_killed_mid_move_lose_and_double_nothing(
    make_mesh: Callable[..., Mesh], sink: ChatServer
) -> None:
    """Pool on, under load over 8 topics, at both sinks: a kill -9 of a machine running
    topics (its runs are placed again, once), a SIGSTOP of another past the ttl (its late
    results refused), then "move this to ..." with a kill -9 of the holder at once.
    Every message answered once (a send in flight at the holder's kill may double at
    the sink that cannot say, reported), in order, the turn counts going on."""
    chat = sink
    agent = "python:tests.system.agents:where"
    mesh = start_mesh(make_mesh, chat, agent, names=("alpha", "bravo", "charlie"))
    awake = holder(mesh)
    assert awake is not None
    awake.json("pool", "enable")
    for m in mesh.machines:
        wait_for(lambda m=m: m.status()["pool"]["enabled"], 30, f"{m.name} to mirror it")  # type: ignore[misc]
    owner, other = [m for m in mesh.machines if m is not awake]

    def more(n: int, what: str) -> None:
        now = replies(chat)
        wait_for(lambda: replies(chat) >= now + n, 120, what)

    command = 0
    try:
        with loading(chat, 1000, until_done=True, topics=POOL_TOPICS) as result:
            more(30, "30 replies")
            owner.signal_node(signal.SIGKILL)
            more(20, "20 replies after the kill -9 of a topic's machine")
            other.send_signal(signal.SIGSTOP)
            try:
                paused, now = time.monotonic(), replies(chat)
                wait_for(
                    lambda: (
                        time.monotonic() - paused > 3 * TTL_MS / 1000 and replies(chat) >= now + 20
                    ),
                    120,
                    "20 replies, and three ttls, while a topic's machine is paused",
                )
            finally:
                other.send_signal(signal.SIGCONT)
            # its topics' runs were taken back and placed elsewhere
            assert awake.status()["pool"]["routing"]["taken_back"] >= 1
            epoch = awake.status()["epoch"]
            command = post(chat, "p1", f"move this to {owner.name}")
            awake.signal_node(signal.SIGKILL)
            wait_for(lambda: failed_over(mesh, epoch), 90, "a holder of a newer epoch")
            more(20, "20 replies after the holder's kill -9")
        posted = {**result["posted"], command: ("p1", "move")}
        wait_for(lambda: answered(chat, set(posted)), 180, "every message answered")
        reported = reported_ambiguous(mesh)
        check_exactly_once(
            chat, posted, reported, mesh, topics=POOL_TOPICS, commands=frozenset({command})
        )
    except BaseException:
        dump(mesh)
        raise
    for topic in POOL_TOPICS:
        counts = turn_counts_of(chat, topic)
        assert counts == list(range(len(counts))), (topic, counts)
