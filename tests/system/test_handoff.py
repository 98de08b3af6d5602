"""Live tail and planned handoff with real processes: machines on a real git remote, the
bundled chat service as the channel, the echo agent (whose reply names the number of
earlier turns of its topic, so a lost or doubled turn shows in the text).

- `baton wakeup` moves the role back and forth under a steady load: no message lost,
  none answered twice, and every topic's turn count goes on without a gap.
- kill -9 of the holder under load: the transcript loss is measured, and it is at most
  the turns of the last flush interval before the kill.
- A member's keys in the test's hands (the "rogue", speaking the real wire) send a
  begin from a machine that is not the holder, a forged ack, an ack that does not match
  and no ack at all: each refused, and the old holder stays awake and answers.
"""

from __future__ import annotations

import queue
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from baton.channels.chat_server import ChatServer
from baton.metrics import Counters
from baton.signing import Ed25519Signer
from baton.stores.identity_store import load_identity, load_public_identity
from baton.wire.envelope import Envelope, make_envelope
from baton.wire.handoff_transport import HandoffWireTransport
from baton.wire.transport import PeerAddress
from baton.wire.zmq_transport import ZmqTransport
from tests.system.chat_kit import (
    T0,
    TOPICS,
    answered,
    check_exactly_once,
    dump,
    failed_over,
    holder,
    load,
    post,
    sends,
    start_mesh,
    topic_messages,
)
from tools.mesh import Machine, Mesh, wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

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
def loading(chat: ChatServer, n: int) -> Iterator[dict[str, Any]]:
    """A steady load of ``n`` messages (25 a second) in a thread, joined on the way out;
    its posts are in the yielded dict's "posted" once it ends."""
    stop = threading.Event()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(posted=load(chat, n, stop)))
    thread.start()
    try:
        yield result
        thread.join(120)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def all_see_the_holder(mesh: Mesh) -> None:
    for m in mesh.machines:
        wait_for(lambda m=m: m.status()["holder"] is not None, 30, f"{m.name} to see a holder")  # type: ignore[misc]


def test_wakeups_under_load_lose_nothing_double_nothing_and_turn_counts_go_on(
    make_mesh: Callable[..., Mesh], chat: ChatServer
) -> None:
    mesh = start_mesh(make_mesh, chat, names=("alpha", "bravo", "charlie"))
    all_see_the_holder(mesh)
    took: list[float] = []
    try:
        with loading(chat, 300) as result:
            for i in range(4):
                time.sleep(1.5)  # the load runs meanwhile
                awake = holder(mesh)
                target = next(m for m in mesh.machines[i % 3 :] + mesh.machines if m is not awake)
                out = target.json("wakeup", timeout=60)
                assert out["outcome"] == "handed_over", out
                took.append(out["took_ms"])
                assert holder(mesh) is target
        posted = result["posted"]
        wait_for(lambda: answered(chat, set(posted)), 120, "every message answered")
    except BaseException:
        dump(mesh)
        raise
    outcomes = check_exactly_once(chat, posted)
    assert outcomes["accepted"] == len(posted) == 300
    for topic in TOPICS:  # transcript loss 0: every count is its reply's place
        counts = turn_counts(chat, topic)
        assert counts == list(range(len(counts))), (topic, counts)
    print("handoff ms", took, "outcomes", dict(outcomes), "at", round(time.monotonic() - T0, 1))


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
    check_exactly_once(chat, posted)
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


class Rogue:
    """A member's keys in the test's hands: it speaks the real wire as that machine (its
    node stopped), to send what a well-behaved node never would."""

    def __init__(self, as_machine: Machine, endpoint: str, peers: list[Machine]) -> None:
        ident = load_identity(as_machine.home)
        self.id = ident.machine_id
        self.signer = Ed25519Signer(self.id, ident.signing_key)
        self.inbox: queue.Queue[Envelope] = queue.Queue()
        self.transport = ZmqTransport(
            self.id, ident.curve_secret, ident.curve_public, endpoint, Counters(), 1 << 20
        )
        self.ids = {}
        addresses = []
        for p in peers:
            public = load_public_identity(p.home)
            self.ids[p.name] = public.machine_id
            addresses.append(
                PeerAddress(public.machine_id, public.encryption_public, p.status()["wire"])
            )
        self.transport.start(self.inbox.put)
        self.transport.set_peers(addresses)
        self.handoff = HandoffWireTransport(self.id, self.signer, self.send)

    def reached_by(self, machine: Machine) -> None:
        """Wait until ``machine``'s link reaches this endpoint again (its redial backs off
        while the real node is down): a ping from it arrives."""
        sender, deadline = self.ids[machine.name], time.monotonic() + 40
        while self.expect("ping", deadline - time.monotonic()).sender != sender:
            continue

    def send(self, env: Envelope) -> bool:
        return bool(wait_for(lambda: self.transport.send(env), 10, f"a connection for {env.type}"))

    def expect(self, type_: str, timeout: float) -> Envelope:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                env = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            if env.type == type_:
                return env
        raise TimeoutError(f"no {type_} within {timeout} s")

    def begin_from(self, holder_id: str, hid: str) -> Envelope:
        self.handoff.request(holder_id, hid)
        return self.expect("handoff_begin", 10)

    def stop(self) -> None:
        self.transport.stop()


def test_a_rogue_begin_a_forged_ack_a_mismatching_ack_and_no_ack_leave_the_holder_awake(
    make_mesh: Callable[..., Mesh], chat: ChatServer
) -> None:
    mesh = start_mesh(make_mesh, chat, names=("alpha", "bravo", "charlie"))
    all_see_the_holder(mesh)
    alpha = holder(mesh)
    assert alpha is not None
    bravo, charlie = (m for m in mesh.machines if m is not alpha)
    posted = {post(chat, t, "before"): (t, "before") for t in TOPICS}
    wait_for(lambda: answered(chat, set(posted)), 30, "the first replies")
    endpoint = bravo.status()["wire"]
    bravo.stop()
    rogue = Rogue(bravo, endpoint, [alpha, charlie])
    try:
        rogue.reached_by(alpha)
        to_alpha = rogue.ids[alpha.name]
        begin = rogue.begin_from(to_alpha, "forged-ack-1")  # a forged signature
        body = {**begin.body, "signature": "00" * 64}
        rogue.send(make_envelope("handoff_ack", rogue.id, to_alpha, body, "a1", begin.epoch))
        assert "forged" in rogue.expect("handoff_abort", 10).body["reason"]
        begin = rogue.begin_from(to_alpha, "mismatch-ack-1")  # signed, but other heads
        rogue.handoff.ack(to_alpha, "mismatch-ack-1", begin.epoch, (("zz/9", 1, "k"),), 0)
        assert "does not match" in rogue.expect("handoff_abort", 10).body["reason"]
        rogue.begin_from(to_alpha, "no-ack-at-all-1")  # and no ack at all
        assert "no ack" in rogue.expect("handoff_abort", 10).body["reason"]
        rogue.handoff.begin(rogue.ids[charlie.name], "not-the-holder", begin.epoch, (), 0)
        wait_for(lambda: charlie.counter("handoff.target.refused") >= 1, 20, "charlie refuses")
        assert holder(mesh, but=bravo) is alpha and alpha.counter("handoff.holder.aborted") == 3
        after = {post(chat, t, "after"): (t, "after") for t in TOPICS}  # ingress runs again
        wait_for(lambda: answered(chat, set(after)), 30, "alpha answers on")
        out = charlie.json("wakeup", timeout=60)  # and a real handoff still works
        assert out["outcome"] == "handed_over", out
    except BaseException:
        dump(mesh)
        raise
    finally:
        rogue.stop()
    check_exactly_once(chat, posted | after)
