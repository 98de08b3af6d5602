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
from typing import Any

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
    status, body = http(m, "/pool")
    return status, body.get("error")


def http(m: Machine, path: str, body: Any = None) -> tuple[int, Any]:
    """``m``'s operator API (GET, or POST with ``body``): the status and the JSON."""
    client = NodeClient(m.home)
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"}
    request = urllib.request.Request(client.info["http"] + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


POOL_TOPICS = [f"p{i}" for i in range(8)]
ON = re.compile(r" on (\w+) in (\S+) state (\d+|-) \(earlier turns: \d+\)$")


def test_the_pool_spreads_eight_topics_over_three_machines_and_a_move_in_the_chat_moves_one(
    make_mesh: Callable[..., Mesh], sink: ChatServer
) -> None:
    """Pool on, 3 machines, a steady load over 8 topics, at both sinks: every topic's
    agent runs on some machine, all three run some; "move this to charlie" in one topic
    is answered by baton, and that topic's later messages run on charlie; every message
    answered once, in order, with the turn count going on."""
    chat = sink
    mesh, awake = pool_mesh(make_mesh, chat, "where_kept")
    try:
        with loading(chat, 1500, until_done=True, topics=POOL_TOPICS) as result:
            wait_for(lambda: replies(chat) >= 40, 90, "40 replies")
            topic = wait_for(
                lambda: next((t for t in POOL_TOPICS if off(chat, t, "charlie")), None),
                60,
                "a topic that does not run on charlie",
            )
            there = post(chat, topic, "move this to charlie")
            ran_after(chat, topic, there, "charlie")
            back = post(chat, topic, "Move it back here, please.")
            ran_after(chat, topic, back, awake.name)
        posted = {**result["posted"], there: (topic, "move"), back: (topic, "move")}
        wait_for(lambda: answered(chat, set(posted)), 120, "every message answered")
        commands = frozenset({there, back})
        check_exactly_once(chat, posted, mesh=mesh, topics=POOL_TOPICS, commands=commands)
        ran: dict[str, set[str]] = {}
        for t in POOL_TOPICS:
            check_turns(chat, t)
            ran[t] = {where for where, _ in ran_on(chat, t)}
            # the topic's agent state followed it: each run saw every run before it
            states = state_counts(chat, t)
            assert states == list(range(len(states))), (t, ran_on(chat, t), states)
    except BaseException:
        dump(mesh)
        raise
    assert set().union(*ran.values()) == {"alpha", "bravo", "charlie"}, ran
    said = {m["reply_to"]: m["text"] for m in topic_messages(chat, topic) if m["from"] == "bot"}
    assert said[there].startswith("Moving this topic to charlie"), said[there]
    assert said[back].startswith(f"Moving this topic to {awake.name}"), said[back]
    assert awake.counter("pool.commands") == 2
    human = awake.baton("status").stdout  # what a person sees
    assert "pool: on; 1 pins" in human and "this machine holder" in human, human


def pool_mesh(
    make_mesh: Callable[..., Mesh], chat: ChatServer, agent: str = "where"
) -> tuple[Mesh, Machine]:
    """alpha, bravo and charlie answering ``chat`` with the pool on (every one mirrors
    it), their agent naming where it ran: the mesh and its holder."""
    agent = f"python:tests.system.agents:{agent}"
    mesh = start_mesh(make_mesh, chat, agent, names=("alpha", "bravo", "charlie"))
    awake = holder(mesh)
    assert awake is not None
    assert awake.json("pool", "enable")["enabled"] is True
    for m in mesh.machines:
        wait_for(lambda m=m: m.status()["pool"]["enabled"], 30, f"{m.name} to mirror it")  # type: ignore[misc]
    return mesh, awake


def off(chat: ChatServer, topic: str, machine: str) -> bool:
    """Whether the chat's ``topic`` last ran somewhere other than ``machine``."""
    ran = ran_on(chat, topic)
    return bool(ran) and ran[-1][0] != machine


def ran_after(chat: ChatServer, topic: str, command: int, target: str) -> None:
    """Three echoes in the chat's ``topic`` after baton's answer to ``command``, all of
    them from ``target`` (the messages before the command ran where they were)."""

    def after() -> list[str] | None:
        said = [m for m in topic_messages(chat, topic) if m["from"] == "bot"]
        at = next((i for i, m in enumerate(said) if m["reply_to"] == command), None)
        if at is None:
            return None
        found = [ON.search(m["text"]) for m in said[at + 1 :]]
        where = [f.group(1) for f in found if f is not None]
        return where if len(where) >= 3 else None

    later = wait_for(after, 90, f"3 echoes in {topic} after the move")
    assert set(later) == {target}, (topic, target, later)


def first_replies(chat: ChatServer, topic: str) -> list[dict[str, Any]]:
    """Each message's first reply in the chat's ``topic`` (a double at the sink that
    cannot say is the same turn)."""
    seen: set[int] = set()
    first = []
    for m in topic_messages(chat, topic):
        if m["from"] == "bot" and m["reply_to"] not in seen:
            seen.add(m["reply_to"])
            first.append(m)
    return first


def turn_counts_of(replies: list[dict[str, Any]]) -> list[int]:
    """The earlier-turn count each of these first replies names, counting a command
    baton answered as a turn too (its answer has no count)."""
    counts: list[int] = []
    for m in replies:
        found = COUNT.search(m["text"])
        counts.append(int(found.group(1)) if found else (counts[-1] + 1 if counts else 0))
    return counts


def check_turns(chat: ChatServer, topic: str) -> None:
    """Each first reply in the chat's ``topic`` saw every turn before it; the replies
    around the first that did not are shown, compactly (CI shows only the start)."""
    first = first_replies(chat, topic)
    counts = turn_counts_of(first)
    bad = next((i for i, n in enumerate(counts) if n != i), None)
    if bad is not None:
        for m in first[max(0, bad - 3) : bad + 4]:
            print(m["message_id"], m["reply_to"], m["epoch"], m["text"])
    assert bad is None, f"{topic}: the reply at {bad} saw {counts[bad]} earlier turns"


def test_owners_killed_and_paused_and_the_holder_killed_mid_move_lose_and_double_nothing(
    make_mesh: Callable[..., Mesh], sink: ChatServer
) -> None:
    """Pool on, under load over 8 topics, at both sinks: a kill -9 of a machine running
    topics (its runs are placed again, once), a SIGSTOP of another past the ttl (its late
    results refused), then "move this to ..." with a kill -9 of the holder at once.
    Every message answered once (a send in flight at the holder's kill may double at
    the sink that cannot say, reported), in order, the turn counts going on."""
    chat = sink
    mesh, awake = pool_mesh(make_mesh, chat)
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
        for topic in POOL_TOPICS:
            check_turns(chat, topic)
    except BaseException:
        dump(mesh)
        raise


def ran_on(chat: ChatServer, topic: str) -> list[tuple[str, str]]:
    """(machine, baton's topic) of each echo in the chat's ``topic``, in order."""
    found = [ON.search(m["text"]) for m in topic_messages(chat, topic) if m["from"] == "bot"]
    return [(f.group(1), f.group(2)) for f in found if f is not None]


def state_counts(chat: ChatServer, topic: str) -> list[int]:
    """How many runs of the topic its state held at each echo (first replies only)."""
    seen: set[int] = set()
    counts = []
    for m in topic_messages(chat, topic):
        if m["from"] == "bot" and m["reply_to"] not in seen and (f := ON.search(m["text"])):
            seen.add(m["reply_to"])
            counts.append(int(f.group(3)))
    return counts


def test_moves_by_http_and_cli_from_any_machine_and_every_pool_routes_errors(
    make_mesh: Callable[..., Mesh], sink: ChatServer
) -> None:
    """Pool on, under load over 8 topics, at both sinks: a move by HTTP on the holder
    and by `baton pool move` on a standby (asking the holder over the wire; confirmed
    when the planner says a reply is in flight, as it usually is under load) each send
    the topic's later messages to the target; placement and unpin from any machine;
    the routes' errors: unknown machine or topic (404), the rate limit (429), an
    offline target without --confirm (409), a malformed body (400), and 503 with the
    pool off. Every message answered once, in order."""
    chat = sink
    mesh, awake = pool_mesh(make_mesh, chat)
    standbys = [m for m in mesh.machines if m is not awake]
    try:
        with loading(chat, 1500, until_done=True, topics=POOL_TOPICS) as result:
            wait_for(lambda: all(ran_on(chat, t) for t in POOL_TOPICS[:3]), 90, "3 topics ran")
            # by HTTP, on the holder
            where, topic = ran_on(chat, "p1")[-1]
            target = next(m for m in mesh.machines if m.name != where)
            move = {"topic": topic, "to": target.name}
            status, plan = http(awake, "/pool/transfer", move)
            if (status, plan.get("error")) == (409, "needs_confirm"):  # a reply in flight
                assert "in flight" in plan["detail"], plan
                status, plan = http(awake, "/pool/transfer", {**move, "confirm": True})
            assert status == 200 and plan["handoff"] is True, plan
            moved_after(chat, "p1", target.name)
            # by the CLI, on a standby: the holder answers
            where, topic2 = ran_on(chat, "p2")[-1]
            target2 = next(m for m in mesh.machines if m.name != where)
            asked = standbys[0].baton("pool", "move", topic2, target2.name, "--json", check=False)
            out = json.loads(asked.stdout)
            if asked.returncode == 1 and out["error"] == "needs_confirm":  # a reply in flight
                out = standbys[0].json("pool", "move", topic2, target2.name, "--confirm")
            assert out["to"] == target2.card()["machine_id"], out
            moved_after(chat, "p2", target2.name)
            seen = standbys[1].json("pool", "placement", topic2)
            assert (seen["nickname"], seen["reason"]) == (target2.name, "pinned"), seen
            human = standbys[1].baton("pool", "placement", topic2).stdout
            assert f"on {target2.name}, pinned" in human, human
            # the errors
            assert (
                http(standbys[1], "/pool/transfer", {"topic": topic, "to": "zulu"})[1]["error"]
                == "unknown_machine"
            )
            assert http(awake, "/pool/transfer", {"topic": "9/9", "to": awake.name})[0] == 404
            assert http(awake, "/pool/transfer", {"topic": topic})[0] == 400
            assert http(awake, "/pool/placement")[0] == 400
            pinned, codes = target, []  # 3 moves of a topic at once, then one each 10 s
            for _ in range(4):
                to = next(m for m in mesh.machines if m is not pinned)
                move = {"topic": topic, "to": to.name, "confirm": True}
                codes.append(http(awake, "/pool/transfer", move))
                if codes[-1][0] != 200:
                    break
                pinned = to
            assert [c for c, _ in codes[:-1]] == [200] * (len(codes) - 1) and len(codes) > 1
            assert codes[-1][0] == 429 and codes[-1][1]["error"] == "rate_limited", codes
            refused = standbys[0].baton("pool", "move", topic, "zulu", "--json", check=False)
            assert refused.returncode == 1 and json.loads(refused.stdout)["error"] == (
                "unknown_machine"
            ), refused
            assert standbys[0].json("pool", "unpin", topic2) == {"topic": topic2, "unpinned": True}
            status, one = http(standbys[1], f"/pool/machines/{standbys[0].name}")
            assert status == 200 and one["alive"] is True and one["holder"] is False, one
            assert http(awake, "/pool/machines/zulu")[0] == 404
            # an offline target: confirm first
            paused = standbys[1]
            paused.send_signal(signal.SIGSTOP)
            try:
                wait_for(
                    lambda: http(awake, f"/pool/machines/{paused.name}")[1]["alive"] is False,
                    60,
                    f"{paused.name} to be offline to the holder",
                )
                where, topic3 = ran_on(chat, "p3")[-1]
                status, body = http(awake, "/pool/transfer", {"topic": topic3, "to": paused.name})
                assert (status, body["error"]) == (409, "needs_confirm"), body
            finally:
                paused.send_signal(signal.SIGCONT)
        posted = result["posted"]
        wait_for(lambda: answered(chat, set(posted)), 180, "every message answered")
        check_exactly_once(chat, posted, reported_ambiguous(mesh), mesh, topics=POOL_TOPICS)
    except BaseException:
        dump(mesh)
        raise
    check = standbys[0].json("pool", "verify")  # a probe through every machine
    assert check["ok"] is True and len(check["results"]) == 3, check
    view = http(standbys[0], "/pool")[1]
    assert view["holder"] == awake.card()["machine_id"] and view["topics_total"] >= 8, view
    assert {m["nickname"] for m in view["machines"]} == {"alpha", "bravo", "charlie"}
    awake.json("pool", "disable")
    for m in mesh.machines:
        wait_for(
            lambda m=m: http(m, "/pool/placement?topic=1/0")[0] == 503,  # type: ignore[misc]
            30,
            f"{m.name} to answer 503 with the pool off",
        )


def moved_after(chat: ChatServer, topic: str, target: str) -> None:
    """The chat's ``topic`` answered from ``target`` from now on: three echoes more, and
    the last two from there (the one in flight at the move may finish where it ran)."""
    now = len(ran_on(chat, topic))
    wait_for(lambda: len(ran_on(chat, topic)) >= now + 3, 90, f"3 more replies in {topic}")
    later = [where for where, _ in ran_on(chat, topic)[now + 1 :]]
    assert later and set(later) == {target}, (topic, target, later)
