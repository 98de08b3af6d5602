"""What an attacking review of the pool's runs found (a helper, before the runs shipped),
each a test that failed before its fix: a peer's question whose answer does not fit a
frame, a member with no agent, a run's time counted while its state was handed over,
replies the agent's own contract forbids, a run pulled for a holder gone since, a
message too big for the wire, a topic run by the holder while the pool was off, and an
empty queue kept after a repeat; and the attacks that held."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import nacl.public
import pykka
import pytest

from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.actors.pool_actor import PoolActor
from baton.actors.pool_handoff import SYNC_MS
from baton.actors.pool_messages import GetPool, PoolConfig
from baton.core.pool_router import MachinePoolRegistry, SessionRouter
from baton.stores.pool_memory import MemoryPoolStore
from baton.wire.envelope import Envelope, encode, make_envelope
from baton.wire.pool_transport import PoolTransport
from tests.actors.test_pool_routing import (
    RUN_TIMEOUT,
    TTL,
    Mesh,
    Node,
    finish_everywhere,
    moved_once,
    on,
    running,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    with running() as m:
        yield m


@pytest.fixture
def synced() -> Iterator[Mesh]:
    with running(state=True) as m:
        yield m


def restart_without_agent(mesh: Mesh, node: Node) -> None:
    """``node`` as a member with no channel configured: the PoolActor gets no jobs."""
    node.actor.stop(timeout=10)
    node.store = MemoryPoolStore()
    node.actor = PoolActor.start(
        node.id,
        store=node.store,
        transport=PoolTransport(node.id, lambda env: node.sent.append(env) is None),
        counters=node.counters,
        clock=mesh.clock,
        nickname=node.nickname,
        key=node.key,
        config=PoolConfig(ttl_ms=TTL, run_timeout_ms=RUN_TIMEOUT),
        jobs=None,
        delivery=None,
        state=None,
    )
    node.ask(MembersChanged(tuple(o.entry for o in mesh.nodes if o is not node)))


# --- 1. a peer's pool_ask whose answer does not fit a frame kills the holder's PoolActor


def test_a_pool_ask_with_a_huge_id_does_not_kill_the_holders_pool_actor(mesh: Mesh) -> None:
    a, b, _ = mesh.nodes
    on(mesh)
    frame = 1 << 20  # the default max_frame_bytes
    a.limit(frame)
    body = {"id": "x" * (frame - 400), "op": "pool", "args": {}}
    ask = make_envelope("pool_ask", b.id, a.id, body, "q1", epoch=3)
    assert len(encode(ask)) <= frame  # a legal frame from an authenticated member
    a.actor.tell(EnvelopeReceived(ask))  # the wire tells it
    try:
        a.ask(GetPool())
    except pykka.ActorDeadError:
        pytest.fail("the holder's PoolActor died of a peer's pool_ask (ValueError from send)")


def test_a_pool_question_with_many_topics_does_not_kill_the_holders_pool_actor(
    mesh: Mesh,
) -> None:
    """max_frame_bytes is a setting (1024 .. 64 MiB): with 64 KiB, a few hundred topics
    make the `pool` answer to a standby larger than a frame."""
    a, b, _ = mesh.nodes
    on(mesh)
    a.limit(64 * 1024)
    for t in range(400):
        mesh.route(a, f"1/{t}", 1, f"hello {t}", 3)
    a.take()
    ask = make_envelope("pool_ask", b.id, a.id, {"id": "q", "op": "pool", "args": {}}, "q1",
                        epoch=3)  # fmt: skip
    a.actor.tell(EnvelopeReceived(ask))
    try:
        a.ask(GetPool())
    except pykka.ActorDeadError:
        pytest.fail("the holder's PoolActor died answering a standby's `pool` question")


# --- 2. a member that runs no agent is placed on for ever


def test_a_member_without_an_agent_does_not_hold_a_topic_for_ever(mesh: Mesh) -> None:
    a, _b, c = mesh.nodes
    restart_without_agent(mesh, c)
    on(mesh)
    runs = [mesh.route(a, f"1/{t}", 1, f"hello {t}", 3) for t in range(3)]
    for _ in range(20):  # 20 s of ticks
        mesh.wire()
        finish_everywhere(mesh)
        mesh.wire()
        mesh.clock.advance(1000)
        mesh.hear_all(a)
    a.ask(GetPool())
    done = {d.key for d in a.done}
    refused = c.counters.get("pool.refused.no_agent")
    missing = [r.entry.key for r in runs if r.entry.key not in done]
    assert not missing, f"never answered: {missing}; charlie refused {refused} runs"


# --- 3. the run's timeout counts the time its handoff took


def test_a_run_is_not_taken_back_before_it_was_out_for_its_timeout(synced: Mesh) -> None:
    mesh = synced
    a, b, _ = mesh.nodes
    on(mesh)
    mesh.route(a, "1/0", 1, "one", 3)  # alpha runs it first
    finish_everywhere(mesh)
    mesh.ok(a, "transfer", topic="1/0", to="bravo", confirm=True)
    a.hold = []  # the holder's StateSync step is slow (a push that takes its time)
    mesh.route(a, "1/0", 2, "two", 3)
    mesh.wire()
    assert b.jobs.runs == []
    for _ in range(SYNC_MS // 5000):
        mesh.clock.advance(5000)
        mesh.hear_all(a)
    mesh.wire()
    assert [m.text for m, _, _ in b.jobs.runs] == ["two"]  # out now, after 30 s
    out_at = mesh.clock.monotonic_ms()
    # bravo runs it; well within RUN_TIMEOUT of the time it went out
    while mesh.clock.monotonic_ms() - out_at < RUN_TIMEOUT - 10_000:
        mesh.clock.advance(5000)
        mesh.hear_all(a)
    taken = a.ask(GetPool())["routing"]["taken_back"]
    ran_for = mesh.clock.monotonic_ms() - out_at
    assert taken == 0, f"taken back after {ran_for} ms out (run_timeout {RUN_TIMEOUT})"


# --- 4. a result's replies are checked less than the agent's own


def _forged_result(a: Node, row: list[Any], replies: Any) -> Envelope:
    """The result of the run ``row`` from the machine it names, with ``replies``."""
    doc = json.dumps({"replies": replies, "error": None})  # ensure_ascii: \ud800 travels
    sealed = nacl.public.SealedBox(a.key.public_key).encrypt(doc.encode())
    body = {"run": row, "box": base64.b64encode(sealed).decode()}
    return make_envelope("pool_result", row[2], a.id, body, "r1", epoch=row[3])


@pytest.mark.parametrize(
    "replies",
    [[], ["\ud800 lone surrogate"], ["   "], ["x"] * 500, ["y" * 200_000]],
    ids=["none", "surrogate", "blank", "500-replies", "200k-chars"],
)
def test_a_result_the_agent_contract_forbids_is_refused(mesh: Mesh, replies: Any) -> None:
    a = mesh.nodes[0]
    on(mesh)
    mesh.route(a, "1/0", 1, "one", 3)  # alpha
    mesh.route(a, "1/1", 1, "two", 3)  # bravo or charlie: its result, forged
    [env] = a.take("pool_run")
    a.ask(EnvelopeReceived(_forged_result(a, list(env.body["run"]), replies)))
    assert a.counters.get("pool.refused.malformed") == 1
    got = [d for d in a.done if d.key == "memory:1/1:1"]
    assert got == [], f"taken as delivery's AgentDone: {got[0].replies!r:.80}"


# --- 5. a run whose state is being pulled starts after its holder is gone


def test_a_pulled_run_does_not_start_once_its_holder_is_deposed(synced: Mesh) -> None:
    mesh = synced
    a, b, c = mesh.nodes
    moved_once(mesh, "bravo")
    b.hold = []  # bravo's pull is slow
    mesh.route(a, "1/0", 2, "two", 3)
    mesh.wire()
    assert len(b.hold) == 1 and b.jobs.runs == []
    mesh.lease(c, 4)  # alpha is gone, charlie holds; alpha's run can never be taken
    b.hold.pop().reply()
    b.ask(GetPool())
    assert b.jobs.runs == [], "bravo runs the agent for a holder that is gone"


# --- 6. a run too big for a frame is sent again at every tick, for ever


def test_a_run_too_big_for_the_wire_is_not_retried_for_ever(mesh: Mesh) -> None:
    a, _b, _c = mesh.nodes
    on(mesh)
    a.limit(64 * 1024)  # a legal max_frame_bytes; delivery lets 64 KiB texts in
    mesh.route(a, "1/0", 1, "small", 3)  # alpha takes one: the next goes to a peer
    big = mesh.route(a, "1/1", 1, "z" * 50_000, 3)
    for _ in range(10):
        mesh.clock.advance(1000)
        mesh.hear_all(a)
    a.take()
    answered = [d for d in a.done if d.key == big.entry.key]
    runs_here = [m for m, _, _ in a.jobs.runs if m.topic == "1/1"]
    tries = a.counters.get("pool.too_big")
    assert answered or runs_here, f"{tries} failed sends, still not run anywhere"


# --- 7. a topic run by delivery itself while the pool was off keeps its old owner


def test_a_topic_run_here_while_the_pool_was_off_is_pulled_by_its_old_machine(
    synced: Mesh,
) -> None:
    """bravo ran 1/0 last through the pool; the pool is turned off and alpha (the holder)
    runs 1/0's next message itself (its state changes on alpha); the pool is on again
    and 1/0 sticks to bravo: bravo runs it without pulling alpha's changes first."""
    from baton.actors.pool_messages import SetPool

    mesh = synced
    a, _b, _ = mesh.nodes
    on(mesh)
    mesh.route(a, "1/0", 1, "one", 3)
    mesh.route(a, "1/1", 1, "two", 3)
    mesh.wire()
    owner = next(n for n in mesh.nodes if any(m.topic == "1/1" for m, _, _ in n.jobs.runs))
    assert owner is not a
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(SetPool(False))
    mesh.route(a, "1/1", 2, "three", 3)  # delivery's own, on alpha: alpha's tree changes
    assert [k for _, k in a.jobs.local] == ["memory:1/1:2"]
    a.ask(SetPool(True))
    pulls_before = owner.syncs
    mesh.route(a, "1/1", 3, "four", 3)
    mesh.wire()
    assert [m.text for m, _, _ in owner.jobs.runs] == ["four"]
    assert owner.syncs > pulls_before, "the topic's old machine ran it without pulling"


# --- what held


def test_taken_back_during_its_handoff_the_stale_run_never_goes_out(synced: Mesh) -> None:
    mesh = synced
    a, b, _c = mesh.nodes
    moved_once(mesh, "bravo")
    a.hold = []
    mesh.route(a, "1/0", 2, "two", 3)
    mesh.wire()
    assert len(a.hold) == 1
    hi = make_envelope("pool_hello", b.id, a.id, {"boot": "one", "agent": True}, "h1", epoch=3)
    a.ask(EnvelopeReceived(hi))
    hi2 = make_envelope("pool_hello", b.id, a.id, {"boot": "two", "agent": True}, "h2", epoch=3)
    a.ask(EnvelopeReceived(hi2))  # bravo restarted: its runs taken back
    assert a.counters.get("pool.lost_in_restart") == 1
    a.hold.pop().reply()  # the stale run's sync ends
    a.ask(GetPool())
    assert a.take("pool_run") == []
    a.hold = None
    mesh.clock.advance(100)
    mesh.hear_all(a)
    mesh.wire()
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert [d.key for d in a.done].count("memory:1/0:2") == 1


def test_a_forged_released_and_a_twice_result_change_nothing(synced: Mesh) -> None:
    mesh = synced
    a, b, c = mesh.nodes
    moved_once(mesh, "bravo")
    mesh.route(a, "1/0", 2, "two", 3)
    mesh.wire()
    finish_everywhere(mesh)
    results = []
    for env in b.take():
        results.append(env)
        a.ask(EnvelopeReceived(env))
    [res] = [e for e in results if e.type == "pool_result"]
    a.ask(EnvelopeReceived(res))  # twice
    a.ask(GetPool())
    assert [d.key for d in a.done].count("memory:1/0:2") == 1
    assert a.counters.get("pool.refused.stale") == 1
    b.hold = []
    mesh.ok(a, "transfer", topic="1/0", to="charlie", confirm=True)
    mesh.route(a, "1/0", 3, "three", 3)
    mesh.wire()
    assert c.jobs.runs == []  # waiting for bravo's release
    forged = make_envelope("pool_released", c.id, a.id, {"topic": "1/0"}, "f1", epoch=3)
    a.ask(EnvelopeReceived(forged))
    a.ask(GetPool())
    assert a.syncs == 0 or all(e.type != "pool_run" for e in a.sent)
    assert c.jobs.runs == []


def test_odd_boxes_and_rows_are_refused(mesh: Mesh) -> None:
    a, b, _ = mesh.nodes
    on(mesh)
    row = ["1/0", "memory:1/0:1", b.id, 3, 1]
    pub = b.key.public_key
    seal = lambda raw: base64.b64encode(nacl.public.SealedBox(pub).encrypt(raw)).decode()  # noqa: E731
    boxes = [
        "",  # empty: shorter than a seal
        base64.b64encode(b"x" * 10).decode(),
        seal(b"\xff\xfe"),  # not UTF-8
        seal(b'{"message": 1e999999, "history": [], "pull": false}'),
        seal(b'{"message": NaN, "history": [], "pull": false}'),
        seal(b"1" * 5000),  # a long integer literal
        seal(("[" * 200000 + "]" * 200000).encode()),
        seal(
            b'{"message": {"topic": "1/0", "message_id": NaN, "text": "", "sender": "", '
            b'"kind": "text"}, "history": [], "pull": false}'
        ),
        seal(
            b'{"message": {"topic": "1/0", "message_id": 1, "text": "", "sender": "", '
            b'"kind": "text"}, "history": [["a", [1]]], "pull": false}'
        ),
        seal(
            b'{"message": {"topic": "1/0", "message_id": 1, "text": "", "sender": "", '
            b'"kind": "text"}, "history": [["a", ["b"], 3]], "pull": 0}'
        ),
    ]
    for i, box in enumerate(boxes):
        env = make_envelope("pool_run", a.id, b.id, {"run": row, "box": box}, f"x{i}", epoch=3)
        b.actor.tell(EnvelopeReceived(env))
    bad_rows = [[1, "k", b.id, 3, 1], ["t", "k", b.id, 3, 2**63], ["t" * 300, "k", b.id, 3, 1],
                ["t", "k", b.id, 3.0, 1], ["t", "k", a.id, 3, 1]]  # fmt: skip
    for i, r in enumerate(bad_rows):
        env = make_envelope("pool_run", a.id, b.id, {"run": r, "box": boxes[3]}, f"y{i}", epoch=3)
        b.actor.tell(EnvelopeReceived(env))
    for i, body in enumerate([{"boot": "", "agent": True}, {"boot": "b" * 65, "agent": True}]):
        a.actor.tell(EnvelopeReceived(make_envelope("pool_hello", b.id, a.id, body, f"h{i}",
                                                    epoch=3)))  # fmt: skip
    a.actor.tell(EnvelopeReceived(make_envelope("pool_release", b.id, a.id, {"topic": ""},
                                                "r1", epoch=3)))  # fmt: skip
    a.actor.tell(EnvelopeReceived(make_envelope("pool_released", b.id, a.id, {"topic": "zz"},
                                                "r2", epoch=3)))  # fmt: skip
    a.actor.tell(
        EnvelopeReceived(
            make_envelope("pool_answer", b.id, a.id, {"id": "q", "answer": {}}, "r3", epoch=3)
        )
    )
    b.ask(Tick(mesh.clock.monotonic_ms()))
    a.ask(Tick(mesh.clock.monotonic_ms()))
    assert b.actor.is_alive() and a.actor.is_alive()
    assert b.counters.get("pool.refused.malformed") == len(boxes) + len(bad_rows)
    assert b.jobs.runs == []


def test_a_repeat_of_the_run_in_flight_leaves_no_empty_queue_behind() -> None:
    reg = MachinePoolRegistry()
    reg.heard("a", "nick-a", 0)
    router = SessionRouter(1, reg, ttl_ms=3000)
    topics = [f"t{i}" for i in range(1000)]
    for t in topics:
        [run] = router.inbound(t, f"{t}:k1", 0)
        assert router.inbound(t, f"{t}:k1", 0) == []  # a repeat while it runs
        taken, more = router.result(run, 0)
        assert taken and more == []
    assert router.running == {}
    assert len(router.waiting) == 0, f"{len(router.waiting)} empty queues kept (tick walks them)"
