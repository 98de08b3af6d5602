"""A fencing-capable test sink: a real HTTP server that keeps the highest epoch it has
seen, accepts acts at that epoch or above (200) and refuses lower ones as stale (409),
and logs every attempt. ``hold(machine_id)`` keeps that machine's next act waiting inside
the sink, undecided, until ``release()``: an act in flight while its sender is paused."""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

HOLD_LIMIT_S = 60.0  # a held act is decided after this even if nobody releases it


@dataclass(frozen=True)
class Attempt:
    machine_id: str
    epoch: int
    seq: int
    outcome: str  # "accepted" | "stale"
    at: float  # time.monotonic() in the test process, when decided


class FencingSink:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.highest = 0
        self.log: list[Attempt] = []
        self.hold_for: str | None = None
        self.holding = threading.Event()
        self._release = threading.Event()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status = sink.act(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/act"

    def start(self) -> FencingSink:
        self.thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def hold(self, machine_id: str) -> None:
        self.hold_for = machine_id

    def release(self) -> None:
        self._release.set()

    def act(self, body: dict[str, Any]) -> int:
        who, epoch, seq = str(body["machine_id"]), int(body["epoch"]), int(body["seq"])
        if self.hold_for == who:
            self.hold_for = None
            self.holding.set()
            self._release.wait(HOLD_LIMIT_S)
        with self.lock:
            stale = epoch < self.highest
            if not stale:
                self.highest = epoch
            outcome = "stale" if stale else "accepted"
            self.log.append(Attempt(who, epoch, seq, outcome, time.monotonic()))
        return 409 if stale else 200

    def attempts(self, machine_id: str | None = None) -> list[Attempt]:
        with self.lock:
            return [a for a in self.log if machine_id in (None, a.machine_id)]
