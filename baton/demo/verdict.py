"""The verdict on a run (the chaos campaign's checker, and `baton demo`'s): reads a
run's history and the chat service's raw log of send attempts, and reports every
violation of baton's promise.

History: JSON lines, one event each, with a ``kind``:

    {"kind": "posted", "message_id": 17, "topic": "t0", "at": 1764000000.1}
    {"kind": "role", "machine": "alpha", "role": "awake", "epoch": 3, "at_ms": 51200.0}
    {"kind": "role", "machine": "alpha", "role": "standby", "epoch": 3, "at_ms": 53100.0,
     "acted_until_ms": 52950.0}
    {"kind": "fault", ...}   (and anything else: kept for people, not checked)

``role`` events are the machines' lease histories (`baton status`): times are each
machine's CLOCK_BOOTTIME ms, one clock for every machine on one host. A stretch as
holder runs from an "awake" event to the next event of that machine that carries
``acted_until_ms`` (an open stretch runs on). Sends are the chat service's
``/api/sends`` entries: ``{seq, time, reply_to, reply_key, epoch, outcome}``.

Violations reported:

- lost: a posted message with no accepted reply;
- duplicated: a message with more accepted replies than the agent gives (echo: one),
  counted by the message answered (reply_to), never by reply key: a sink that forgives
  nothing (Telegram) has none. A double that a machine reported as an ambiguous send
  (a send that may have arrived when its machine crashed or paused: the one double
  baton cannot rule out at such a sink) is listed apart, as ``reported``, and is no
  violation; any other double is;
- stale_accepted: an accepted send whose epoch is below one the sink had seen before it;
- epochs_backwards: a holder's stretch whose epoch is below the one before it, or equal
  to it on another machine (one epoch, two holders). The same machine again at the
  same epoch is one term going on: a holder that suspended itself when a renewal was
  late, and acts again once that renewal is confirmed;
- overlapping: two machines' stretches as holder that overlap in time.

``python -m tools.chaos.checker HISTORY SENDS`` prints the summary (``--json``).
It is in the package so that `baton demo` judges its own run with it.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Stretch:
    machine: str
    epoch: int
    start_ms: float
    end_ms: float


@dataclass
class Report:
    posted: int = 0
    accepted: int = 0
    lost: list[int] = field(default_factory=list)
    duplicated: dict[int, int] = field(default_factory=dict)
    reported: dict[int, int] = field(default_factory=dict)  # doubles reported ambiguous
    stale_accepted: list[dict[str, Any]] = field(default_factory=list)
    epochs_backwards: list[tuple[Stretch, Stretch]] = field(default_factory=list)
    overlapping: list[tuple[Stretch, Stretch]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.stale_accepted
            or self.epochs_backwards
            or self.overlapping
        )

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "posted": self.posted,
            "accepted": self.accepted,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "reported_doubles": len(self.reported),
            "stale_accepted": len(self.stale_accepted),
            "epochs_backwards": len(self.epochs_backwards),
            "overlapping": len(self.overlapping),
            "examples": {
                "lost": self.lost[:5],
                "duplicated": dict(list(self.duplicated.items())[:5]),
                "stale_accepted": self.stale_accepted[:3],
                "epochs_backwards": [_pair(p) for p in self.epochs_backwards[:3]],
                "overlapping": [_pair(p) for p in self.overlapping[:3]],
            },
        }


def _pair(pair: tuple[Stretch, Stretch]) -> list[dict[str, Any]]:
    return [vars(s) for s in pair]


def stretches(events: Iterable[Mapping[str, Any]]) -> list[Stretch]:
    """Every machine's stretches as holder, from its role events, sorted by start."""
    out: list[Stretch] = []
    open_: dict[str, tuple[int, float]] = {}
    for e in events:
        if e.get("kind") != "role":
            continue
        machine = str(e["machine"])
        if e["role"] == "awake":
            open_[machine] = (int(e["epoch"]), float(e["at_ms"]))
        elif machine in open_ and "acted_until_ms" in e:
            epoch, start = open_.pop(machine)
            out.append(Stretch(machine, epoch, start, float(e["acted_until_ms"])))
    out += [Stretch(m, ep, start, float("inf")) for m, (ep, start) in open_.items()]
    return sorted(out, key=lambda s: (s.start_ms, s.epoch))


def check(
    events: Sequence[Mapping[str, Any]],
    sends: Sequence[Mapping[str, Any]],
    replies_per_message: int = 1,
    ambiguous: Iterable[int] = (),
) -> Report:
    """``ambiguous``: the message ids the machines reported an ambiguous send for."""
    report = Report()
    reported = set(ambiguous)
    posted = [int(e["message_id"]) for e in events if e.get("kind") == "posted"]
    report.posted = len(posted)
    accepted = [s for s in sends if s.get("outcome") == "accepted"]
    report.accepted = len(accepted)
    per_message = Counter(int(s["reply_to"]) for s in accepted)
    report.lost = sorted(m for m in set(posted) if per_message[m] == 0)
    doubles = {m: n for m, n in sorted(per_message.items()) if n > replies_per_message}
    report.duplicated = {m: n for m, n in doubles.items() if m not in reported}
    report.reported = {m: n for m, n in doubles.items() if m in reported}
    highest = 0
    for s in sorted(sends, key=lambda s: s["seq"]):
        epoch = s.get("epoch")
        if epoch is None:
            continue
        if s.get("outcome") == "accepted" and epoch < highest:
            report.stale_accepted.append(dict(s))
        highest = max(highest, int(epoch))
    spans = stretches(events)
    for a, b in itertools.pairwise(spans):
        if b.epoch < a.epoch or (b.epoch == a.epoch and b.machine != a.machine):
            report.epochs_backwards.append((a, b))
    for a, b in itertools.combinations(spans, 2):
        if a.machine != b.machine and a.start_ms < b.end_ms and b.start_ms < a.end_ms:
            report.overlapping.append((a, b))
    return report


def read_lines(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def ambiguous_sends(log_files: Iterable[Path]) -> set[int]:
    """The message ids of every ambiguous send the machines reported in their JSON-lines
    logs (``event.kind == "ambiguous_send"``); unreadable lines are skipped."""
    found: set[int] = set()
    for path in log_files:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if '"ambiguous_send"' not in line:
                continue
            try:
                event = json.loads(line).get("event") or {}
            except ValueError:
                continue
            if event.get("kind") == "ambiguous_send" and isinstance(event.get("message_id"), int):
                found.add(event["message_id"])
    return found
