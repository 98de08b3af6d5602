"""The pool's runs through real PoolActors (in-memory stores, a fake clock, an agent pool
the test finishes by hand, envelopes handed between machines by the test): delivery's
runs go through the holder's router to the topic's machine and back as delivery's
AgentDone, exactly once; a result of a run taken back, from another machine or
another term is refused; a runner takes runs only from the holder its lease view
names; a move in the conversation is answered by the holder, and the topic's next
message runs on the target; what does not open is counted and dropped."""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import nacl.public
import nacl.signing
import pykka
import pytest

from baton.actors.delivery_jobs import AgentResult
from baton.actors.delivery_messages import AgentDone
from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.actors.pool_actor import PoolActor
from baton.actors.pool_handoff import RELEASE_MS
from baton.actors.pool_messages import GetPool, Heard, PoolConfig, RouteRun, SetPool
from baton.actors.pool_probe import PROBE_TIMEOUT_MS
from baton.actors.pool_queries import ASK_TIMEOUT_MS, Query, raise_for
from baton.actors.state_sync_actor import SyncNow
from baton.adapters.metrics import Counters
from baton.agents.base import AgentMessage, Turn
from baton.core.clock import FakeClock
from baton.core.errors import PoolDisabled
from baton.core.identity import PublicIdentity
from baton.core.lease_types import LeaseChanged, Phase
from baton.core.ledger import LedgerEntry, LedgerState
from baton.core.pool_router import TopicRun
from baton.core.registry import MachineEntry, entry_from_card
from baton.stores.pool_memory import MemoryPoolStore
from baton.wire.envelope import Envelope, encode, make_envelope
from baton.wire.pool_transport import PoolTransport
from baton.wire.transport import check_outbound

pytestmark = pytest.mark.timeout(60)

TTL = 10_000
RUN_TIMEOUT = 60_000


class Jobs:
    """The agent pool: delivery's own runs are recorded, the pool's wait for the test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local: list[tuple[int, str]] = []  # delivery's own runs: (token, key)
        self.runs: list[tuple[AgentMessage, Sequence[Turn], Callable[[AgentResult], None]]] = []

    def agent(self, token: int, entry: LedgerEntry, history: Sequence[Turn]) -> None:
        with self.lock:
            self.local.append((token, entry.key))

    def run(
        self, message: AgentMessage, history: Sequence[Turn], done: Callable[[AgentResult], None]
    ) -> None:
        with self.lock:
            self.runs.append((message, history, done))

    def finish(self, text: str | None = None) -> AgentMessage:
        """Finish the oldest run: its replies are "re: <text>"."""
        with self.lock:
            message, _, done = self.runs.pop(0)
        done(((f"re: {message.text}",), None) if text is None else ((text,), None))
        return message


class Node:
    def __init__(self, seed: int, nickname: str, clock: FakeClock, state: bool = False) -> None:
        signing = nacl.signing.SigningKey(bytes([seed]) * 32)
        self.key = nacl.public.PrivateKey(bytes([seed + 1]) * 32)
        ident = PublicIdentity.from_keys(
            nickname, bytes(signing.verify_key), bytes(self.key.public_key)
        )
        card = {**ident.to_dict(), "wire": "tcp://127.0.0.1:9001", "http": "http://127.0.0.1:1"}
        self.entry: MachineEntry = entry_from_card(card, 0.0)
        self.id = self.entry.machine_id
        self.nickname = nickname
        self.sent: list[Envelope] = []
        self.done: list[AgentDone] = []
        self.jobs = Jobs()
        self.counters = Counters()
        self.clock = clock
        self.store = MemoryPoolStore()
        self.frame: int | None = None  # the wire's frame limit, when a test sets one
        self.transport = PoolTransport(self.id, self.send)
        self.actor = PoolActor.start(
            self.id,
            store=self.store,
            transport=self.transport,
            counters=self.counters,
            clock=clock,
            nickname=nickname,
            key=self.key,
            config=PoolConfig(ttl_ms=TTL, run_timeout_ms=RUN_TIMEOUT),
            jobs=self.jobs,
            delivery=self.done.append,
            state=self.state_step if state else None,
        )

    def send(self, env: Envelope) -> bool:
        """As the wire's: ValueError past the frame limit (check_outbound)."""
        if self.frame is not None:
            check_outbound(env, self.id, self.frame, encode(env))
        self.sent.append(env)
        return True

    def limit(self, frame: int) -> None:
        """The frame limit of a smaller ``max_frame_bytes`` (the node's budget with it)."""
        self.frame = frame
        self.transport.budget = frame // 2

    syncs: int = 0  # StateSync steps asked (the fake StateSyncActor)
    hold: list[SyncNow] | None = None  # steps held back (a StateSync that does not answer)

    def state_step(self, step: SyncNow) -> None:
        self.syncs += 1
        if self.hold is None:
            step.reply()
        else:
            self.hold.append(step)

    def ask(self, message: Any) -> Any:
        return self.actor.ask(message, timeout=10)

    def take(self, kind: str | None = None) -> list[Envelope]:
        taken = [e for e in self.sent if kind is None or e.type == kind]
        self.sent = [e for e in self.sent if e not in taken]
        return taken


class Mesh:
    def __init__(self, state: bool = False) -> None:
        self.clock = FakeClock(monotonic_ms=100_000.0)
        self.nodes = [Node(10, "alpha", self.clock, state), Node(20, "bravo", self.clock, state),
                      Node(30, "charlie", self.clock, state)]  # fmt: skip
        self.tokens = 0
        for n in self.nodes:
            n.ask(MembersChanged(tuple(o.entry for o in self.nodes if o is not n)))

    def by(self, machine_id: str) -> Node:
        return next(n for n in self.nodes if n.id == machine_id)

    def lease(self, holder: Node, epoch: int) -> None:
        for n in self.nodes:
            phase = Phase.HOLDING if n is holder else Phase.STANDBY
            n.ask(LeaseChanged(phase, holder.id, epoch, "test"))

    def hear_all(self, holder: Node, *, but: Sequence[Node] = ()) -> None:
        now = self.clock.monotonic_ms()
        for n in self.nodes:
            if n is not holder and n not in but:
                holder.ask(Heard(n.id, now))
        holder.ask(Tick(now))

    def route(self, holder: Node, topic: str, n: int, text: str, epoch: int) -> RouteRun:
        self.tokens += 1
        key = f"memory:{topic}:{n}"
        entry = LedgerEntry(key=key, channel="memory", topic=topic, chat_id=1, thread_id=0,
                            message_id=n, update_id=n, text=text, sender="user",
                            state=LedgerState.PROCESSING)  # fmt: skip
        run = RouteRun(self.tokens, entry, (Turn("before", ("it was",)),), epoch)
        holder.ask(run)
        return run

    def wire(self) -> None:
        """Hand every envelope sent to its recipient, until none is left."""
        while True:
            for n in self.nodes:  # what each has told itself is handled first
                n.ask(GetPool())
            envs = [e for n in self.nodes for e in n.take() if e.type != "pool_state"]
            if not envs:
                return
            for env in envs:
                self.by(env.to).ask(EnvelopeReceived(env))

    def query(self, node: Node, op: str, **args: Any) -> dict[str, Any]:
        """Ask ``node`` a pool question (it asks the holder over the wire unless it
        holds): its answer, {"ok": ...} or {"error", "detail"}."""
        future: pykka.ThreadingFuture[dict[str, Any]] = pykka.ThreadingFuture()
        node.actor.tell(Query(op, args, future.set))
        node.ask(GetPool())  # the question is handled (asked, or answered)
        self.wire()
        return future.get(timeout=10)

    def ok(self, node: Node, op: str, **args: Any) -> Any:
        return raise_for(self.query(node, op, **args))

    def stop(self) -> None:
        for n in self.nodes:
            n.actor.stop(timeout=10)


@contextlib.contextmanager
def running(state: bool = False) -> Iterator[Mesh]:
    """A mesh of three PoolActors (``state``: each with a fake StateSyncActor), stopped
    after."""
    m = Mesh(state=state)
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    with running() as m:
        yield m


def on(mesh: Mesh, epoch: int = 3) -> Node:
    a = mesh.nodes[0]
    mesh.lease(a, epoch)
    a.ask(SetPool(True))
    for env in a.take("pool_state"):  # every member mirrors it
        mesh.by(env.to).ask(EnvelopeReceived(env))
    mesh.hear_all(a)
    return a


def moved_once(mesh: Mesh, to: str) -> None:
    """The pool on; topic 1/0's first message run on alpha; then 1/0 moved to ``to``."""
    a = mesh.nodes[0]
    on(mesh)
    mesh.route(a, "1/0", 1, "one", 3)
    finish_everywhere(mesh)
    mesh.ok(a, "transfer", topic="1/0", to=to, confirm=True)


def finish_everywhere(mesh: Mesh) -> None:
    for n in mesh.nodes:
        while n.jobs.runs:
            n.jobs.finish()
        n.ask(GetPool())  # the RunFinished told by finish() is handled


def test_with_the_pool_off_a_run_is_deliverys_own(mesh: Mesh) -> None:
    a = mesh.nodes[0]
    mesh.lease(a, 3)
    run = mesh.route(a, "1/0", 1, "hello", 3)
    assert a.jobs.local == [(run.token, run.entry.key)]
    assert a.take("pool_run") == [] and a.jobs.runs == []


def test_a_run_at_another_term_than_the_holders_is_deliverys_own(mesh: Mesh) -> None:
    a = on(mesh)
    run = mesh.route(a, "1/0", 1, "hello", 2)
    assert a.jobs.local == [(run.token, run.entry.key)]


def test_topics_spread_over_the_machines_and_each_reply_comes_back_once(mesh: Mesh) -> None:
    a = on(mesh)
    runs = [mesh.route(a, f"1/{t}", 1, f"hello {t}", 3) for t in range(6)]
    mesh.wire()
    counts = [len(n.jobs.runs) for n in mesh.nodes]
    assert counts == [2, 2, 2]  # least-loaded
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert sorted((d.token, d.key, d.replies) for d in a.done) == sorted(
        (r.token, r.entry.key, (f"re: {r.entry.text}",)) for r in runs
    )
    assert a.counters.get("pool.results") == 6
    # the history went with each run
    for n in mesh.nodes[1:]:
        assert n.counters.get("pool.refused.malformed") == 0
    view = mesh.ok(a, "placement", topic="1/0")
    assert view["reason"] == "placed" and view["holder"] == a.id


def test_a_dead_owners_run_goes_elsewhere_once_and_its_late_result_is_refused(
    mesh: Mesh,
) -> None:
    a, b, c = mesh.nodes
    on(mesh)
    mesh.route(a, "1/0", 1, "one", 3)  # alpha takes 1/0 (all loads 0: the lowest id)
    mesh.route(a, "1/1", 1, "two", 3)
    mesh.route(a, "1/2", 1, "three", 3)
    mesh.wire()
    owner = next(n for n in (b, c) if n.jobs.runs and n.jobs.runs[0][0].topic == "1/1")
    other = c if owner is b else b
    assert [m.topic for m, _, _ in other.jobs.runs] == ["1/2"]
    mesh.clock.advance(TTL + 1)
    mesh.hear_all(a, but=[owner])  # the owner is dead past the ttl: taken back
    mesh.wire()
    assert a.ask(GetPool())["routing"]["taken_back"] == 1
    again = [n for n in (a, other) for m, _, _ in n.jobs.runs if m.topic == "1/1"]
    assert len(again) == 1  # on a live machine, once
    owner.jobs.finish("late")
    owner.ask(GetPool())
    mesh.wire()
    assert a.counters.get("pool.refused.stale") == 1
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    replies = sorted(d.replies for d in a.done if d.key == "memory:1/1:1")
    assert replies == [("re: two",)]  # once, from the machine that owns it now


def test_a_runner_takes_runs_only_from_the_holder_its_lease_view_names(mesh: Mesh) -> None:
    a, b, c = mesh.nodes
    on(mesh)
    b.ask(LeaseChanged(Phase.STANDBY, c.id, 2, "behind"))  # b's view is behind
    mesh.route(a, "1/0", 1, "one", 3)
    mesh.route(a, "1/1", 1, "two", 3)
    mesh.wire()
    assert b.jobs.runs == [] and b.counters.get("pool.refused.not_holder") == 1
    assert a.counters.get("pool.run_refused") == 1
    b.ask(LeaseChanged(Phase.STANDBY, a.id, 3, "caught up"))
    mesh.clock.advance(100)
    mesh.hear_all(a)  # placed again at the next tick, at the next epoch
    mesh.wire()
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert sorted(d.key for d in a.done) == ["memory:1/0:1", "memory:1/1:1"]


def test_a_move_in_the_conversation_is_answered_and_the_next_message_runs_there(
    mesh: Mesh,
) -> None:
    a, _b, c = mesh.nodes
    on(mesh)
    mesh.route(a, "1/0", 1, "hello", 3)  # placed on alpha
    finish_everywhere(mesh)
    cmd = mesh.route(a, "1/0", 2, "Move this to charlie!", 3)
    a.ask(GetPool())
    said = [d for d in a.done if d.token == cmd.token]
    assert len(said) == 1 and said[0].replies is not None
    assert "charlie" in said[0].replies[0] and "Moving" in said[0].replies[0]
    mesh.route(a, "1/0", 3, "and now?", 3)
    mesh.wire()
    assert [m.text for m, _, _ in c.jobs.runs] == ["and now?"]
    assert mesh.ok(a, "placement", topic="1/0")["reason"] == "pinned"
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert [d.replies for d in a.done if d.key == "memory:1/0:3"] == [("re: and now?",)]
    mesh.clock.advance(1000)  # a move of a topic ... then one each 10 s: 2 of 3 spent
    back = mesh.route(a, "1/0", 4, "move it back here", 3)
    said = [d for d in a.done if d.token == back.token]
    assert said and said[0].replies is not None and "alpha" in said[0].replies[0]
    assert a.counters.get("pool.commands") == 2
    mesh.route(a, "1/0", 5, "home?", 3)
    assert [m.text for m, _, _ in a.jobs.runs] == ["home?"]
    assert mesh.ok(a, "placement", topic="1/0")["machine_id"] == a.id


def test_a_move_names_a_member_and_a_known_topic_and_a_standby_asks_the_holder(
    mesh: Mesh,
) -> None:
    a, b, c = mesh.nodes
    with pytest.raises(PoolDisabled):
        mesh.ok(a, "transfer", topic="1/0", to="bravo", confirm=False)
    on(mesh)
    mesh.route(a, "1/0", 1, "hello", 3)
    move = {"topic": "1/0", "confirm": False}
    assert mesh.query(a, "transfer", **move, to="zulu")["error"] == "unknown_machine"
    assert mesh.query(a, "transfer", topic="9/9", to="bravo", confirm=False)["error"] == (
        "unknown_topic"
    )
    # a standby's question goes to the holder, and is the holder's to answer
    plan = mesh.ok(b, "transfer", topic="1/0", to="bravo", confirm=True)
    assert plan["to"] == b.id and plan["handoff"] is True
    # its message in flight runs where it was; then it is bravo's
    assert mesh.ok(c, "placement", topic="1/0")["machine_id"] == a.id
    finish_everywhere(mesh)
    seen = mesh.ok(c, "placement", topic="1/0")
    assert (seen["machine_id"], seen["reason"]) == (b.id, "pinned")
    assert mesh.ok(c, "unpin", topic="1/0") == {"topic": "1/0", "unpinned": True}
    assert mesh.ok(a, "unpin", topic="1/0") == {"topic": "1/0", "unpinned": False}
    machines = mesh.ok(b, "pool")["machines"]
    assert sorted(m["nickname"] for m in machines if m["alive"]) == ["alpha", "bravo", "charlie"]
    assert mesh.ok(c, "machine", machine="charlie")["machine_id"] == c.id
    assert mesh.query(c, "machine", machine="zulu")["error"] == "unknown_machine"
    a.ask(SetPool(False))
    with pytest.raises(PoolDisabled):
        mesh.ok(a, "placement", topic="1/0")


def test_a_standby_whose_holder_does_not_answer_says_so_in_time(mesh: Mesh) -> None:
    a, b, _ = mesh.nodes
    on(mesh)
    future: pykka.ThreadingFuture[dict[str, Any]] = pykka.ThreadingFuture()
    b.actor.tell(Query("pool", {}, future.set))
    b.ask(GetPool())
    assert [e.type for e in b.take("pool_ask")] == ["pool_ask"]  # lost on the way
    mesh.clock.advance(ASK_TIMEOUT_MS)
    b.ask(Tick(mesh.clock.monotonic_ms()))
    assert future.get(timeout=10)["error"] == "unavailable"
    late = make_envelope("pool_answer", a.id, b.id, {"id": "nope", "answer": {}}, "l1", epoch=3)
    b.ask(EnvelopeReceived(late))
    assert b.counters.get("pool.refused.answer") == 1


@pytest.mark.parametrize(
    "body",
    [{"id": "q", "op": "drop", "args": {}}, {"id": "q", "op": "unpin", "args": {}},
     {"id": "q", "op": "transfer", "args": {"topic": "t", "to": "b", "confirm": 1}},
     {"id": "q", "op": "placement", "args": {"topic": ""}}],
)  # fmt: skip
def test_a_malformed_question_is_answered_bad_request(mesh: Mesh, body: dict[str, Any]) -> None:
    a, b, _ = mesh.nodes
    on(mesh)
    a.ask(EnvelopeReceived(make_envelope("pool_ask", b.id, a.id, body, "q1", epoch=3)))
    [answer] = a.take("pool_answer")
    assert answer.body["answer"]["error"] == "bad_request"
    assert a.counters.get("pool.refused.ask") == 1


def test_pins_and_placements_survive_a_failover_of_the_holder(mesh: Mesh) -> None:
    a, b, c = mesh.nodes
    on(mesh)
    mesh.route(a, "1/0", 1, "hello", 3)
    mesh.ok(a, "transfer", topic="1/0", to="charlie", confirm=True)
    mesh.clock.advance(1000)
    a.ask(Tick(mesh.clock.monotonic_ms()))
    for env in a.take("pool_state"):
        mesh.by(env.to).ask(EnvelopeReceived(env))
    mesh.lease(b, 4)  # alpha is gone; bravo holds
    mesh.hear_all(b, but=[a])
    assert mesh.ok(b, "placement", topic="1/0")["reason"] == "pinned"
    mesh.route(b, "1/0", 2, "still there?", 4)
    mesh.wire()
    assert [m.text for m, _, _ in c.jobs.runs] == ["still there?"]


def test_what_does_not_open_is_counted_and_dropped(mesh: Mesh) -> None:
    a, b, _ = mesh.nodes
    on(mesh)
    run = TopicRun("1/0", "memory:1/0:1", b.id, 3, 1)
    row = ["1/0", "memory:1/0:1", b.id, 3, 1]
    other = nacl.public.PrivateKey.generate()
    sealed = nacl.public.SealedBox(other.public_key).encrypt(b"{}")
    bad = [
        {"run": row, "box": "not base64!"},
        {"run": row, "box": base64.b64encode(sealed).decode()},  # not b's key
        {"run": row[:4], "box": ""},
        {"run": ["1/0", "k", b.id, True, 1], "box": ""},
    ]
    for body in bad:
        b.ask(EnvelopeReceived(make_envelope("pool_run", a.id, b.id, body, "x1", epoch=3)))
    deep = ("[" * 100 + "]" * 100).encode()
    box = base64.b64encode(nacl.public.SealedBox(b.key.public_key).encrypt(deep)).decode()
    b.ask(EnvelopeReceived(make_envelope("pool_run", a.id, b.id, {"run": row, "box": box}, "x2",
                                         epoch=3)))  # fmt: skip
    assert b.counters.get("pool.refused.malformed") == 5 and b.jobs.runs == []
    PoolTransport(b.id, lambda env: a.ask(EnvelopeReceived(env)) is None).send_result(
        a.id, run, bytes(other.public_key), ("x",), None
    )
    assert a.counters.get("pool.refused.malformed") == 1
    assert a.actor.is_alive() and b.actor.is_alive()


def test_a_machine_that_restarted_has_its_runs_placed_again(mesh: Mesh) -> None:
    a, b, _c = mesh.nodes
    on(mesh)
    mesh.wire()  # the hellos each sent the new holder at once
    first = {"boot": "first", "agent": True}
    hello = make_envelope("pool_hello", b.id, a.id, first, "h1", epoch=3)
    a.ask(EnvelopeReceived(hello))
    mesh.route(a, "1/0", 1, "one", 3)  # alpha
    mesh.route(a, "1/1", 1, "two", 3)  # bravo
    mesh.wire()
    assert [m.text for m, _, _ in b.jobs.runs] == ["two"]
    a.ask(EnvelopeReceived(hello))  # the same process: nothing changes
    assert a.counters.get("pool.lost_in_restart") == 0
    second = {"boot": "second", "agent": True}
    again = make_envelope("pool_hello", b.id, a.id, second, "h2", epoch=3)
    a.ask(EnvelopeReceived(again))
    assert a.counters.get("pool.lost_in_restart") == 1
    mesh.hear_all(a)  # placed again at the next tick, at the next epoch
    mesh.wire()
    b.jobs.finish()  # the run the old process had: its result is refused
    b.ask(GetPool())
    mesh.wire()
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert [d.replies for d in a.done if d.key == "memory:1/1:1"] == [("re: two",)]
    stranger = make_envelope("pool_hello", b.id, a.id, {"boot": "x", "agent": True}, "h3", epoch=2)
    a.ask(EnvelopeReceived(stranger))  # another term's
    assert a.counters.get("pool.refused.hello") == 1


def test_the_pool_check_probes_every_live_machine_and_never_runs_an_agent(mesh: Mesh) -> None:
    a, b, c = mesh.nodes
    on(mesh)
    started = mesh.ok(b, "verify")  # asked by a standby: the holder probes
    assert started["check"] == 1
    view = mesh.ok(c, "e2e")
    assert view["done"] and view["ok"], view
    assert set(view["results"]) == {a.id, b.id, c.id}
    assert all(n.jobs.runs == [] and n.jobs.local == [] for n in mesh.nodes)
    assert b.counters.get("pool.probes") == 1
    # charlie, dead past the ttl, is not probed
    mesh.clock.advance(TTL + 1)
    mesh.hear_all(a, but=[c])
    assert mesh.ok(a, "verify")["check"] == 2
    view = mesh.ok(a, "e2e")
    assert view["done"] and view["ok"] and set(view["results"]) == {a.id, b.id}, view


def test_a_probe_whose_answer_is_lost_fails_after_its_time(mesh: Mesh) -> None:
    a, b, _ = mesh.nodes
    on(mesh)
    future: pykka.ThreadingFuture[dict[str, Any]] = pykka.ThreadingFuture()
    a.actor.tell(Query("verify", {}, future.set))
    assert future.get(timeout=10)["ok"]["done"] is False
    probes = a.take("pool_run")
    assert sorted(e.to for e in probes) == sorted([b.id, mesh.nodes[2].id])
    for env in probes:  # charlie answers, bravo's answer is lost
        mesh.by(env.to).ask(EnvelopeReceived(env))
    for env in mesh.nodes[2].take("pool_result"):
        a.ask(EnvelopeReceived(env))
    b.take()
    mesh.clock.advance(PROBE_TIMEOUT_MS + 1)
    a.ask(Tick(mesh.clock.monotonic_ms()))
    view = mesh.ok(a, "e2e")
    assert view["done"] and not view["ok"]
    assert view["results"][b.id]["ok"] is False and view["results"][a.id]["ok"] is True


@pytest.fixture
def synced() -> Iterator[Mesh]:
    with running(state=True) as m:
        yield m


def test_a_topic_that_moves_takes_its_agent_state_with_it(synced: Mesh) -> None:
    """alpha (the holder) ran it: alpha's StateSync step, then bravo pulls before it runs
    there; again on bravo: nothing; then to charlie: bravo queues its changes first
    (pool_release), alpha takes and pushes them, charlie pulls, then runs."""
    mesh = synced
    a, b, c = mesh.nodes
    on(mesh)
    mesh.route(a, "1/0", 1, "one", 3)  # alpha: first placement, here: no handoff
    finish_everywhere(mesh)
    assert a.syncs == 0
    mesh.ok(a, "transfer", topic="1/0", to="bravo", confirm=True)
    mesh.route(a, "1/0", 2, "two", 3)
    mesh.wire()
    assert (a.syncs, b.syncs) == (1, 1)  # the holder pushed, bravo pulled, then ran
    assert [m.text for m, _, _ in b.jobs.runs] == ["two"]
    finish_everywhere(mesh)
    mesh.wire()
    mesh.route(a, "1/0", 3, "three", 3)  # sticky: no handoff
    mesh.wire()
    assert (a.syncs, b.syncs) == (1, 1) and [m.text for m, _, _ in b.jobs.runs] == ["three"]
    finish_everywhere(mesh)
    mesh.wire()
    mesh.ok(a, "transfer", topic="1/0", to="charlie", confirm=True)
    mesh.route(a, "1/0", 4, "four", 3)
    mesh.wire()
    assert (a.syncs, b.syncs, c.syncs) == (2, 2, 1)  # bravo queued, alpha took, charlie pulled
    assert [m.text for m, _, _ in c.jobs.runs] == ["four"]
    assert a.counters.get("pool.handoffs") == 2 and a.counters.get("pool.handoff_late") == 0
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert [d.key for d in a.done] == [f"memory:1/0:{n}" for n in (1, 2, 3, 4)]


def test_an_old_machine_that_does_not_release_holds_a_topic_only_so_long(synced: Mesh) -> None:
    mesh = synced
    a, b, c = mesh.nodes
    moved_once(mesh, "bravo")
    mesh.route(a, "1/0", 2, "two", 3)
    mesh.wire()
    finish_everywhere(mesh)
    mesh.wire()
    b.hold = []  # bravo's StateSync answers nothing now
    mesh.ok(a, "transfer", topic="1/0", to="charlie", confirm=True)
    mesh.route(a, "1/0", 3, "three", 3)
    mesh.wire()
    assert c.jobs.runs == [] and len(b.hold) == 1  # waiting for bravo's changes
    at = f"memory:1/0:3 on {c.id} at epoch"
    in_flight = a.ask(GetPool())["routing"]["in_flight"]  # status says where it waits
    assert in_flight["1/0"].startswith(at) and in_flight["1/0"].endswith("(release)")
    mesh.clock.advance(RELEASE_MS)
    mesh.hear_all(a)
    mesh.wire()
    assert a.counters.get("pool.handoff_late") == 1
    assert [m.text for m, _, _ in c.jobs.runs] == ["three"]  # on without them
    mesh.clock.advance(1500)
    assert a.ask(GetPool())["routing"]["in_flight"]["1/0"].endswith(": out 1500 ms")
    forged = make_envelope("pool_release", c.id, b.id, {"topic": "1/0"}, "r1", epoch=3)
    b.ask(EnvelopeReceived(forged))  # not the holder's
    assert b.counters.get("pool.refused.release") == 1


def test_a_new_machine_whose_state_never_comes_runs_the_move_after_its_time(
    synced: Mesh,
) -> None:
    """A slow state sync on the target delays a moved topic, never silences it: the
    holder gives a pull run PULL_MS more than its own time (no take-back, no endless
    handoff again), and the target runs it without the state after PULL_MS."""
    mesh = synced
    a, _b, c = mesh.nodes
    c.hold = []  # charlie's StateSync answers nothing
    moved_once(mesh, "charlie")
    mesh.route(a, "1/0", 2, "two", 3)
    mesh.wire()
    assert c.jobs.runs == [] and len(c.hold) == 1  # charlie waits for the state
    mesh.clock.advance(RUN_TIMEOUT + 1)
    mesh.hear_all(a)
    now = mesh.clock.monotonic_ms()
    c.ask(Tick(now))
    mesh.wire()
    view = a.ask(GetPool())["routing"]
    assert view["taken_back"] == 0, view  # still within its time and the pull's
    assert [m.text for m, _, _ in c.jobs.runs] == ["two"]  # ran without its state
    assert c.counters.get("pool.pull_late") == 1
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert [d.replies for d in a.done if d.key == "memory:1/0:2"] == [("re: two",)]
    c.hold[0].reply()  # the state comes at last: nothing runs twice
    c.ask(GetPool())
    assert c.jobs.runs == [] and a.counters.get("pool.refused.stale") == 0


def test_a_move_said_first_in_a_new_topic_pins_it_and_the_pool_lists_it(mesh: Mesh) -> None:
    a, _, c = mesh.nodes
    on(mesh)
    said = mesh.route(a, "2/0", 1, "move this to charlie", 3)  # the topic's first message
    answer = [d.replies for d in a.done if d.token == said.token]
    assert answer == [("Moving this topic to charlie: it runs there from the next message.",)]
    listed = {t["topic"]: t for t in mesh.ok(a, "pool")["topics"]}
    assert (listed["2/0"]["nickname"], listed["2/0"]["reason"]) == ("charlie", "pinned")
    mesh.route(a, "2/0", 2, "hello", 3)
    mesh.wire()
    assert [m.text for m, _, _ in c.jobs.runs] == ["hello"]


def test_a_topic_pinned_to_a_dead_machine_waits_and_status_says_why(mesh: Mesh) -> None:
    a, _b, c = mesh.nodes
    on(mesh)
    mesh.route(a, "1/0", 1, "one", 3)
    finish_everywhere(mesh)
    mesh.wire()
    mesh.ok(a, "transfer", topic="1/0", to="charlie", confirm=True)
    mesh.clock.advance(TTL + 1)
    mesh.hear_all(a, but=[c])  # charlie unheard past the ttl
    mesh.route(a, "1/0", 2, "two", 3)
    mesh.wire()
    assert c.jobs.runs == []
    routing = a.ask(GetPool())["routing"]
    assert routing["held_back"] == {"1/0": f"1 waiting: pinned to {c.id}, not alive"}
    assert routing["in_flight"] == {}
    mesh.hear_all(a)  # charlie is back: the message goes out to it
    mesh.wire()
    assert [m.text for m, _, _ in c.jobs.runs] == ["two"]
    routing = a.ask(GetPool())["routing"]
    assert routing["held_back"] == {} and list(routing["in_flight"]) == ["1/0"]
