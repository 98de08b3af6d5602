"""FenceProbe: a diagnostic holder-side action for chaos runs and tests (off by default).

While this machine may act (LeaseGate), it POSTs ``{machine_id, epoch, seq}`` to
``fence_probe_url`` every PROBE_EVERY_S: a stand-in for the side effects a holder has,
aimed at a fencing sink that keeps the highest epoch it has seen and refuses lower
ones (HTTP 409). The sink's log then shows which epochs acted when; the node counts
``probe.accepted``, ``probe.refused`` (stale) and ``probe.failed``.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request

from baton.adapters.metrics import Counters
from baton.core.clock import Clock
from baton.holder.gate import LeaseGate

log = logging.getLogger("baton.probe")

PROBE_EVERY_S = 0.2
TIMEOUT_S = 5.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FenceProbe:
    def __init__(
        self, url: str, machine_id: str, gate: LeaseGate, clock: Clock, counters: Counters
    ) -> None:
        self.url = url
        self.machine_id = machine_id
        self.gate = gate
        self.clock = clock
        self.counters = counters
        self.seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="baton-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = TIMEOUT_S + 1) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(PROBE_EVERY_S):
            epoch = self.gate.current(self.clock.monotonic_ms())
            if epoch is not None:
                self._act(epoch)

    def _act(self, epoch: int) -> None:
        self.seq += 1
        body = {"machine_id": self.machine_id, "epoch": epoch, "seq": self.seq}
        request = urllib.request.Request(
            self.url, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=TIMEOUT_S):
                self.counters.inc("probe.accepted")
        except urllib.error.HTTPError as exc:
            kind = "refused" if exc.code == 409 else "failed"
            self.counters.inc(f"probe.{kind}")
            log.warning("probe: epoch %d %s by the sink (HTTP %d)", epoch, kind, exc.code)
        except OSError as exc:
            self.counters.inc("probe.failed")
            log.info("probe: %s unreachable: %s", self.url, exc)
