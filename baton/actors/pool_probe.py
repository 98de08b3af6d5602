"""The pool's own end-to-end check (docs/DESIGN.md, "The pool"): `baton pool verify`,
GET /session-pool/e2e-results.

The holder sends a probe through every machine it thinks alive: a TopicRun of the
reserved topic PROBE_TOPIC, sealed to the machine like any run, which its runner takes
only from the holder its lease view names and answers at once, sealed back. The
agent is never run on a probe: a made-up message must not reach an agent that acts.
So a probe proves the way a run goes (the wire both ways, the seals, the lease views
agreeing), not the agent. A probe unanswered within PROBE_TIMEOUT_MS fails.

Invariants: only the newest check's probes are taken (each probe's key names its
check); a result that is not a probe's goes on to the router untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from baton.agents.base import AgentMessage, Turn
from baton.core.pool_router import TopicRun

PROBE_TOPIC = "pool-probe"
PROBE_TEXT = "pool probe"
PROBE_TIMEOUT_MS = 5000


class PoolProbes:
    def __init__(self) -> None:
        self.check = 0
        self.started_ms: float | None = None
        self.started_at: float | None = None  # wall-clock seconds
        self.results: dict[str, dict[str, Any]] = {}  # machine -> its probe's outcome
        self.sent: dict[str, float] = {}  # machine -> when its probe went out

    def start(
        self, machines: Iterable[str], term: int, now: float, wall_s: float
    ) -> list[TopicRun]:
        """A new check: a probe for each of ``machines``, the older check forgotten."""
        self.check += 1
        self.started_ms, self.started_at = now, wall_s
        self.results, self.sent = {}, {}
        runs = []
        for machine_id in sorted(machines):
            key = f"{PROBE_TOPIC}:{self.check}:{machine_id}"
            runs.append(TopicRun(PROBE_TOPIC, key, machine_id, term, self.check))
            self.sent[machine_id] = now
        return runs

    def verify(
        self,
        me: str,
        alive: Iterable[str],
        term: int,
        *,
        now: float,
        wall_s: float,
        send: Callable[[TopicRun, AgentMessage, tuple[Turn, ...]], bool],
    ) -> None:
        """A new check through every machine in ``alive`` (``me`` answers at once)."""
        probe = AgentMessage(PROBE_TOPIC, 0, PROBE_TEXT, me)
        for run in self.start(alive, term, now, wall_s):
            if run.machine_id == me:
                self.took(run, (PROBE_TEXT,), None, now)
            else:
                try:
                    sent = send(run, probe, ())
                except ValueError:  # past the frame limit (a tiny max_frame_bytes)
                    sent = False
                if not sent:
                    self.failed(run.machine_id, "could not be sent")

    def took(self, run: TopicRun, replies: tuple[str, ...] | None, error: str | None,
             now: float) -> bool:  # fmt: skip
        """Whether ``run`` was a probe (of any check); the newest check's is recorded."""
        if run.topic != PROBE_TOPIC:
            return False
        if run.epoch == self.check and run.machine_id in self.sent:
            took_ms = round(now - self.sent.pop(run.machine_id), 1)
            ok = error is None and replies == (PROBE_TEXT,)
            self.results[run.machine_id] = {"ok": ok, "ms": took_ms, "error": error}
        return True

    def failed(self, machine_id: str, why: str) -> None:
        if self.sent.pop(machine_id, None) is not None:
            self.results[machine_id] = {"ok": False, "ms": None, "error": why}

    def tick(self, now: float) -> None:
        for machine_id, sent in list(self.sent.items()):
            if now - sent > PROBE_TIMEOUT_MS:
                self.failed(machine_id, f"no answer within {PROBE_TIMEOUT_MS} ms")

    def view(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "started_at": self.started_at,
            "done": not self.sent,
            "ok": not self.sent and all(r["ok"] for r in self.results.values()),
            "results": dict(self.results),
            "waiting": sorted(self.sent),
        }
