"""The transport's fault hooks: partitions without root, for tests and the chaos campaign.

When the setting ``fault_file`` (``BATON_FAULT_FILE``) names a file, the node wraps its
transport in a FaultyTransport. That file is a JSON object

    {"drop_to": [machine_id, ...], "drop_from": [machine_id, ...]}

and the wrapper drops every frame this machine would send to a machine in ``drop_to``
and every frame it receives from a machine in ``drop_from``, as a network that loses
them would: a dropped send still returns True (the frame was "handed over" and lost on
the way). So ``drop_to`` and ``drop_from`` on both sides cut a link both ways; either
alone on one side is a one-way partition. ``tools/faults`` writes these files.

Invariants:
- Without the setting nothing is wrapped: production nodes never read such a file.
- The file is re-read when its inode, modification time or size changes, at most every
  CHECK_S; a missing file means no faults. A file that is not such an object is logged
  and counted (``wire.fault_file_bad``) once per change and means no faults either,
  so a bad file never silences a machine by accident.
- Every dropped frame is counted (``wire.fault_dropped``); each change of plan is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from baton.adapters.metrics import Counters
from baton.core import safejson
from baton.wire.envelope import Envelope
from baton.wire.transport import PeerAddress, Transport

log = logging.getLogger("baton.wire")

CHECK_S = 0.1
DROPPED = "wire.fault_dropped"
BAD_FILE = "wire.fault_file_bad"


@dataclass(frozen=True)
class FaultPlan:
    drop_to: frozenset[str] = frozenset()
    drop_from: frozenset[str] = frozenset()


def parse_plan(text: str) -> FaultPlan:
    """The plan in ``text``; ValueError if it is not {"drop_to": [...], "drop_from": [...]}."""
    raw = safejson.loads(text)
    if not isinstance(raw, dict) or set(raw) - {"drop_to", "drop_from"}:
        raise ValueError("expected an object with only drop_to and drop_from")
    lists = [raw.get(key, []) for key in ("drop_to", "drop_from")]
    for items in lists:
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise ValueError("drop_to and drop_from must be lists of machine ids")
    return FaultPlan(frozenset(lists[0]), frozenset(lists[1]))


class FaultFile:
    """The plan in one file, re-read when it changes (thread-safe)."""

    def __init__(self, path: Path, counters: Counters, clock: Callable[[], float]) -> None:
        self.path, self.counters, self.clock = path, counters, clock
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._stamp: tuple[int, int, int] | None = None
        self._plan = FaultPlan()

    def plan(self) -> FaultPlan:
        with self._lock:
            now = self.clock()
            if now - self._checked >= CHECK_S:
                self._checked = now
                self._reload()
            return self._plan

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            stamp = None
        else:
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # os.replace: a new inode
        if stamp == self._stamp:
            return
        self._stamp = stamp
        plan = FaultPlan()
        if stamp is not None:
            try:
                plan = parse_plan(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                self.counters.inc(BAD_FILE)
                log.warning("fault file %s ignored: %s", self.path, exc)
        if plan != self._plan:
            log.warning(
                "fault hooks: dropping frames to %s and from %s",
                sorted(plan.drop_to) or "nobody",
                sorted(plan.drop_from) or "nobody",
            )
        self._plan = plan


class FaultyTransport:
    """A Transport that loses what its FaultFile says; otherwise the inner transport."""

    def __init__(self, inner: Transport, faults: FaultFile, counters: Counters) -> None:
        self.inner, self.faults, self.counters = inner, faults, counters

    @property
    def endpoint(self) -> str:
        return self.inner.endpoint

    def start(self, deliver: Callable[[Envelope], None]) -> None:
        def filtered(env: Envelope) -> None:
            if env.sender in self.faults.plan().drop_from:
                self.counters.inc(DROPPED)
                return
            deliver(env)

        self.inner.start(filtered)

    def set_peers(self, peers: Sequence[PeerAddress]) -> None:
        self.inner.set_peers(peers)

    def speak(self, protocol: int) -> None:
        self.inner.speak(protocol)

    def send(self, env: Envelope) -> bool:
        if env.to in self.faults.plan().drop_to:
            self.counters.inc(DROPPED)
            return True
        return self.inner.send(env)

    def stop(self) -> None:
        self.inner.stop()

    def is_alive(self) -> bool:
        return self.inner.is_alive()

    def redial(self, gone: Collection[str] | None = None) -> None:
        self.inner.redial(gone)

    def dialed(self) -> dict[str, str]:
        return self.inner.dialed()

    def observed(self) -> dict[str, str]:
        return self.inner.observed()


def with_fault_hooks(inner: Transport, fault_file: str, counters: Counters) -> Transport:
    """``inner`` itself when ``fault_file`` is empty (always, outside tests and chaos)."""
    if not fault_file:
        return inner
    log.warning("fault hooks on: the wire obeys %s", fault_file)
    return FaultyTransport(inner, FaultFile(Path(fault_file), counters, time.monotonic), counters)
