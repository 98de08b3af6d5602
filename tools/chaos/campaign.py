"""The chaos campaign: a mesh of 3 real machines under a seeded fault schedule, a steady
load the whole time, a recorded history, and the checker's verdict.

    python -m tools.chaos --seed 7 [--faults 12] [--every 4] [--ttl-ms 3000]
                          [--sink telegram|fencing] [--pool] [--json]

Theory of operation: baton.demo.kit starts the mesh (a chat service, a git lease store
on a bare repository, 3 machines paired with real codes, each with the transport's
fault hooks on and, where libfaketime is installed, its wall clock under faketime). A
Loader posts messages over 5 topics (a closed loop: it waits while 40 are unanswered,
as a person would; an open loop on a busy host outruns the mesh, and the backlog
decides the verdict); a Watcher reads every machine's status four times
a second and turns their lease histories into role events. The faults of
tools/chaos/schedule.py are applied one after the other (each undone after its
duration: heal, resume, restart, clock back, store healed), each recorded as a "fault"
event with the machine it hit. Then the load stops, every message gets up to 180 s to be
answered, and baton.demo.verdict judges the history and the chat service's log of sends:
lost, duplicated, stale-epoch sends accepted, epochs backwards, overlapping holders.
The chat service forgives nothing by default (``--sink telegram``: doubles are counted
by the message answered; one is excused only where a machine reported an ambiguous
send); ``--sink fencing`` makes it refuse stale epochs and repeated reply keys. Only
standbys in sync take over by themselves, so each fault waits until every standby is
in sync again (``Mesh.synced_holder``).

With ``--pool`` the pool is turned on at the holder once the load runs, and just before
each fault a topic is moved (POST /pool/transfer, confirmed, through a machine the pick
names, which asks the holder): moves land during kills, pauses and partitions. A
refused move (the holder gone, the rate limit) is an outcome, counted in ``moves``.

The run's directory (history.jsonl, sends.json, every machine's logs) is removed after
a clean run and kept after a violation or a failure of the campaign itself (its path
is printed). Exit 0 clean, 1 violation, 2 the campaign could not finish.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baton.core.errors import BatonError
from baton.demo.devmesh import SYNC_POLL_S, Machine, wait_for
from baton.demo.kit import Loader, Run, Watcher, all_answered, verdict
from baton.demo.verdict import stretches
from baton.node.client import NodeClient
from tools.chaos.schedule import Fault
from tools.faults import clock, hooks, signals
from tools.faults.store import StoreFaults

NAMES = ("alpha", "bravo", "charlie")
TOPICS = [f"t{i}" for i in range(5)]


class Campaign:
    def __init__(
        self,
        seed: int,
        faults: list[Fault],
        ttl_ms: int,
        rate: float,
        say: Callable[[str], None],
        *,
        sink: str = "telegram",
        max_unanswered: int | None = None,
        pool: bool = False,
    ) -> None:
        self.seed, self.faults, self.ttl_ms, self.rate, self.say = seed, faults, ttl_ms, rate, say
        self.run = Run(NAMES, ttl_ms, prefix="baton-chaos-", sink=sink)
        self.faketime = clock.libfaketime() is not None
        self.watcher = Watcher(self.run)
        self.loader = Loader(self.run, TOPICS, rate, max_unanswered)
        self.parts = hooks.Partitions(self.run.mesh)
        self.store = StoreFaults(self.run.store)
        self.skipped: list[str] = []  # faults this host cannot make
        self.pool = pool  # the pool on, and a move of a topic just before each fault
        self.moves: Counter[str] = Counter()  # the moves' outcomes

    def prepare(self, m: Machine) -> None:
        hooks.enable(m)
        if self.faketime:
            m.env.update(clock.faketime_env(self.offset(m)))

    def offset(self, m: Machine) -> Path:
        return self.run.root / f"{m.name}.faketime"

    def main(self) -> dict[str, Any]:
        """The verdict; or, when the campaign itself failed (a restart that did not come
        up, a wakeup that hung), ``ok`` false with ``error``: not a verdict, but the
        directory is kept all the same."""
        try:
            self.say(f"seed {self.seed}: {len(self.faults)} faults; starting 3 machines")
            self.run.start(self.prepare)
            self.watcher.start()
            self.loader.start()
            if self.pool:
                self._pool_on()
            began = time.monotonic()
            for fault in self.faults:
                wait_for(lambda f=fault: time.monotonic() - began >= f.at_s, 600, "its time")  # type: ignore[misc]
                self.apply(fault)
            return self.judge()
        except Exception as exc:
            self.run.keep = True
            return {"seed": self.seed, "ok": False, "error": repr(exc), "dir": str(self.run.root)}
        finally:
            self.loader.stop()
            self.watcher.stop()
            self.run.close()
            if self.faketime:  # what the machines killed by faults left of libfaketime's
                clock.sweep(pid for m in self.run.mesh.machines for pid in m.pids)

    # --- faults -----------------------------------------------------------------------

    def target(self, fault: Fault) -> Machine:
        machines = self.run.mesh.machines
        held = self.watcher.holder()
        holder = next((m for m in machines if held and m.name == held[0]), None)
        if fault.target == "holder" and holder is not None:
            return holder
        others = [m for m in machines if m is not holder]
        return others[fault.pick % len(others)]

    def apply(self, fault: Fault) -> None:
        wait_for(self.run.mesh.synced_holder, 120, "every standby in sync", SYNC_POLL_S)
        m = self.target(fault)
        other = [o for o in self.run.mesh.machines if o is not m][fault.pick % 2]
        fields = fault.to_dict()
        fields["fault"] = fields.pop("kind")
        event = self.run.history.add("fault", machine=m.name, **fields)
        self.say(
            f"{fault.at_s:7.1f} s  {fault.kind:<10} {m.name} {fault.amount} "
            f"{fault.duration_s or ''}"
        )
        if self.pool:
            self._move(fault)
        undo = getattr(self, f"_{fault.kind}")(m, other, fault)
        if fault.duration_s:
            time.sleep(fault.duration_s)  # the fault lasts this long: that is the schedule
        if undo is not None:
            undo()
        self.run.history.add("fault_end", machine=m.name, fault=fault.kind, started=event["at"])

    def _pool_on(self) -> None:
        def on() -> bool:
            held = self.watcher.holder()
            m = next((m for m in self.run.mesh.machines if held and m.name == held[0]), None)
            return m is not None and m.baton("pool", "enable", check=False).returncode == 0

        wait_for(on, 60, "the pool on at the holder", 0.5)
        self.say("           the pool is on: a move of a topic before each fault")

    def _move(self, fault: Fault) -> None:
        """Move a topic (which, and where to, from the fault's pick) through a machine
        the fault spares, asking the holder; a refusal is an outcome, not a failure."""
        machines = self.run.mesh.machines
        asker = machines[(fault.pick + 1) % len(machines)]
        try:
            client = NodeClient(asker.home, timeout=15)
            topics = client.get("/pool")["topics"]
            if not topics:
                self.moves["no_topic"] += 1
                return
            topic = topics[fault.pick % len(topics)]["topic"]
            to = machines[fault.pick // 3 % len(machines)].name
            client.post("/pool/transfer", {"topic": topic, "to": to, "confirm": True})
            outcome = f"moved {topic} to {to}"
            self.moves["moved"] += 1
        except BatonError as exc:
            outcome = f"refused: {exc.code}"
            self.moves[exc.code] += 1
        self.run.history.add("move", machine=asker.name, outcome=outcome)
        self.say(f"           move: {outcome}")

    def _kill(self, m: Machine, other: Machine, f: Fault) -> None:
        self.watcher.poll(m)
        signals.kill(m)
        self.watcher.died(m)

    def _kill_whole(self, m: Machine, other: Machine, f: Fault) -> Callable[[], None]:
        self.watcher.poll(m)
        signals.kill(m, whole=True)
        self.watcher.died(m)
        return lambda: signals.restart(m)

    def _pause(self, m: Machine, other: Machine, f: Fault) -> Callable[[], None]:
        self.watcher.poll(m)
        self.run.paused.add(m.name)
        signals.pause(m)

        def undo() -> None:
            signals.resume(m)
            self.run.paused.discard(m.name)

        return undo

    def _isolate(self, m: Machine, other: Machine, f: Fault) -> Callable[[], None]:
        self.parts.isolate(m)
        return self.parts.heal

    def _cut(self, m: Machine, other: Machine, f: Fault) -> Callable[[], None]:
        self.parts.cut(m, other)
        return self.parts.heal

    def _one_way(self, m: Machine, other: Machine, f: Fault) -> Callable[[], None]:
        self.parts.one_way(m, other)
        return self.parts.heal

    def _clock_jump(self, m: Machine, other: Machine, f: Fault) -> Callable[[], None] | None:
        if not self.faketime:
            self.say("           (no libfaketime: clock jump skipped)")
            self.skipped.append(f.kind)
            return None
        clock.jump(self.offset(m), f.amount)
        return lambda: clock.jump(self.offset(m), "+0")

    def _handoff(self, m: Machine, other: Machine, f: Fault) -> None:
        out = m.baton("wakeup", "--json", check=False, timeout=180)
        answer = " ".join((out.stdout or out.stderr).split())[-300:]  # one line
        self.run.history.add("handoff", machine=m.name, exit=out.returncode, answer=answer)
        self.say(f"           wakeup: {'ok' if out.returncode == 0 else 'failed'}: {answer}")

    def _down_back(self, m: Machine, other: Machine, f: Fault) -> Callable[[], None]:
        """`baton down` while the others answer; back up after the fault's duration,
        then made holder by `baton wakeup` once it is in sync (what it missed, it must
        not answer again)."""
        self.watcher.stopped(m, lambda: m.baton("down", check=False))

        def undo() -> None:
            m.up()
            wait_for(
                lambda: self.run.mesh.synced_holder() not in (None, m), 120, "in sync", SYNC_POLL_S
            )
            self._handoff(m, other, f)

        return undo

    def _store_slow(self, m: Machine, other: Machine, f: Fault) -> Callable[[], None]:
        self.store.slow(float(f.amount))
        return self.store.heal

    def _store_fail(self, m: Machine, other: Machine, f: Fault) -> Callable[[], None]:
        self.store.fail()
        return self.store.heal

    # --- the verdict ------------------------------------------------------------------

    def judge(self) -> dict[str, Any]:
        self.say("faults done; stopping the load, waiting for every answer")
        self.loader.stop()
        answered = True
        try:
            wait_for(lambda: all_answered(self.run), 180, "every message answered", 0.25)
        except TimeoutError:
            answered = False
        for m in self.run.mesh.machines:
            self.watcher.poll(m)
        sends = self.run.sends()
        (self.run.root / "sends.json").write_text(json.dumps(sends))
        report, _ = verdict(self.run)
        summary = {"seed": self.seed, "faults": len(self.faults), **report.summary()}
        summary["terms"] = len(stretches(self.run.history.events))  # stretches as holder
        summary["stale_refused"] = sum(1 for s in sends if s["outcome"] == "stale")
        summary["sink"] = self.run.sink
        summary["pool"] = self.pool
        summary["moves"] = dict(self.moves)
        summary["loader_error"] = repr(self.loader.error) if self.loader.error else None
        summary["skipped"] = self.skipped
        summary["load_held_s"] = round(self.loader.held_s, 1)
        summary["latency_s"] = latency(self.run.history.of("posted"), sends)
        summary["ok"] = report.ok and answered and self.loader.error is None
        if not answered:  # where the replies stopped, while the machines still run
            summary["stuck"] = {
                m.name: stuck_view(self.watcher.views.get(m.name)) for m in self.run.mesh.machines
            }
        if not summary["ok"]:
            self.run.keep = True
            summary["dir"] = str(self.run.root)
        return summary


def stuck_view(view: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a machine's last status says of its role, its delivery (the topics it
    waits on) and its pool (the runs in flight), compactly."""
    if view is None:
        return None
    delivery = dict(view.get("delivery") or {})
    alarms = delivery.pop("alarms", [])[-3:]
    delivery.pop("alarm_counts", None)
    counters = {
        k: v
        for k, v in (view.get("counters") or {}).items()
        if k.startswith(("delivery.", "marker.", "outbox.", "poll.", "channel.", "pool.", "tail."))
    }
    keep = ("role", "epoch", "holder", "in_sync", "pool")
    return {**{k: view.get(k) for k in keep}, **delivery, "alarms": alarms, "counters": counters}


def latency(posted: list[dict[str, Any]], sends: list[dict[str, Any]]) -> dict[str, float]:
    """From each message posted to its first accepted reply, in seconds: p50, p95 and
    max over the answered ones. With the load a closed loop, a mesh that answers but
    slowly passes the checker; this is where it shows."""
    first: dict[int, float] = {}
    for send in sends:
        if send["outcome"] == "accepted" and send["reply_to"] is not None:
            key = int(send["reply_to"])
            first[key] = min(first.get(key, send["time"]), send["time"])
    took = sorted(first[e["message_id"]] - e["at"] for e in posted if e["message_id"] in first)
    if not took:
        return {}
    at = lambda q: round(took[min(len(took) - 1, int(q * len(took)))], 2)  # noqa: E731
    return {"p50": at(0.5), "p95": at(0.95), "max": round(took[-1], 2)}
