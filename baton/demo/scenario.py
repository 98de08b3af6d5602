"""`baton demo`'s scenario: baton's promise kept in front of you, in about half a minute.

Three real machines (alpha, bravo, charlie) on loopback pair with real codes and share a
git lease store (a bare repository in a temporary directory); the bundled chat service
is the channel and the echo agent answers. While a loader posts messages over four
topics the whole time, the demo

1. kills the awake machine with kill -9 (node and supervisor, as a crash of the whole
   machine) and times the failover: kill -> the first reply the new holder gets
   accepted; checks that the new holder's agent state (the echo agent's state file,
   synchronized through git: StateSync) holds every turn the remote had at the kill;
   then starts it again (`baton up`) and it rejoins as a standby;
2. hands the role back to it with `baton wakeup` and times the handoff: asked -> the
   first reply at the new epoch;
3. pauses the awake machine (SIGSTOP) past its lease, lets a standby take over, and
   resumes it: it must stand down, and anything it tries to send is refused as stale;
4. turns the pool on and says "move this to charlie" in a topic: baton answers it, and
   the topic's later messages run on charlie (a standby), their replies still sent
   once by the awake machine;
5. stops the load, waits for every message to be answered, and judges the whole run
   with baton.demo.verdict: lost, duplicated, stale sends accepted, epochs going backwards,
   two holders at once. ``transcript_loss`` counts the turns the agent's history lost
   to the kill -9 and the pause (those not yet flushed to a standby; bounded by the
   flush interval).

Each step waits on a condition with a deadline; a step that times out ends the demo
with ``ok: false`` and the reason. Everything runs in one temporary directory, removed
at the end (``keep`` leaves it, with the run's history and every machine's logs).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from baton.demo.devmesh import SYNC_POLL_S, Machine, wait_for
from baton.demo.kit import (
    Loader,
    Run,
    Watcher,
    all_answered,
    pushed_state,
    state_lines,
    transcript_loss,
    verdict,
)
from baton.node.client import NodeClient

NAMES = ("alpha", "bravo", "charlie")
TOPICS = ["general", "travel", "recipes", "work"]
TTL_MS = 3000
RATE = 16.0  # messages a second
#: the load waits while this many are unanswered (as a person waits for replies): on a
#: host too busy to keep up, a backlog would decide the run, not the faults
MAX_UNANSWERED = 64
FAILED = "failed"  # the step title on_step gets when the demo cannot go on


@dataclass
class Progress:
    """What the live view shows: the steps so far, and the run (once it exists)."""

    steps: list[tuple[str, str]] = field(default_factory=list)  # (title, outcome or "")
    run: Run | None = None
    watcher: Watcher | None = None
    loader: Loader | None = None
    notes: dict[str, str] = field(default_factory=dict)  # machine name -> "killed", ...


SINKS = ("telegram", "fencing")  # what `--sink both` runs, in this order
SUMMED: tuple[str, ...] = ("messages", "replies", "lost", "duplicated", "reported_doubles")
SUMMED += ("stale_refused", "repeats_refused", "stale_accepted", "epochs_backwards")
SUMMED += ("overlapping", "transcript_loss", "state_turns", "state_lost")


def combine(summaries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One summary for runs against several sinks: counts summed, times and the epoch
    from the worst run, ``ok`` only if every run was, and each run under ``sinks``."""
    runs = list(summaries.values())
    out: dict[str, Any] = {"ok": all(r.get("ok") for r in runs)}
    for key in SUMMED:
        out[key] = sum(int(r.get(key) or 0) for r in runs)
    for key in ("failover_s", "handoff_s"):
        times = [r[key] for r in runs if r.get(key) is not None]
        out[key] = max(times) if times else None
    out["epoch"] = min((int(r.get("epoch") or 0) for r in runs), default=0)
    out["duration_s"] = round(sum(float(r.get("duration_s") or 0) for r in runs), 1)
    errors = [f"{name}: {r['error']}" for name, r in summaries.items() if "error" in r]
    if errors:
        out["error"] = "; ".join(errors)
    out["sinks"] = summaries
    return out


class Demo:
    """One run of the scenario against the chat service in mode ``sink``: "fencing"
    (it refuses stale epochs and knows reply keys) or "telegram" (it forgives nothing,
    as Telegram: a double reply would reach the user)."""

    def __init__(
        self,
        keep: bool = False,
        on_step: Callable[[str, str], None] | None = None,
        sink: str = "fencing",
    ):
        self.sink = sink
        self.keep = keep
        self.on_step = on_step or (lambda title, outcome: None)
        self.progress = Progress()
        self.measured: dict[str, Any] = {}

    # --- steps ------------------------------------------------------------------------

    def step(self, title: str) -> None:
        self.progress.steps.append((title, ""))
        self.on_step(title, "")

    def done(self, outcome: str) -> None:
        title, _ = self.progress.steps[-1]
        self.progress.steps[-1] = (title, outcome)
        self.on_step(title, outcome)

    def main(self) -> dict[str, Any]:
        """Run every step; the summary (``ok`` false, with ``error``, if a step failed)."""
        started = time.monotonic()
        self.run = run = Run(NAMES, TTL_MS, keep=self.keep, sink=self.sink)
        self.watcher = watcher = Watcher(run)
        loader = Loader(run, TOPICS, RATE, MAX_UNANSWERED)
        self.progress.run = run
        try:
            self.step(
                f"start a chat service ({self.sink} mode), a git lease store and 3 machines; "
                "pair them"
            )
            run.start()
            self.done(f"{run.chat.url}, {run.store}")
            self.progress.watcher, self.progress.loader = watcher, loader
            watcher.start()
            loader.start()
            self.steady()
            self.failover()
            self.handoff()
            self.pause()
            self.pool()
            summary = self.finish(loader)
        except Exception as exc:
            summary = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if watcher.error is not None:
                summary["error"] += f" (watching failed too: {watcher.error!r})"
            self.on_step(FAILED, summary["error"])
        finally:
            loader.stop()
            watcher.stop()
            run.close()
        summary["duration_s"] = round(time.monotonic() - started, 1)
        if self.keep:
            summary["dir"] = str(run.root)
        return summary

    def steady(self, more: int = 40) -> None:
        """Let ``more`` further messages be answered (the load runs meanwhile)."""
        target = len(self.accepted()) + more
        first = not self.progress.steps[1:]
        self.step(
            f"steady load: {RATE:.0f} messages a second over {len(TOPICS)} topics"
            if first
            else f"the load goes on: {more} more replies"
        )
        wait_for(lambda: len(self.accepted()) >= target, 60, f"{more} more replies")
        self.done(f"{len(self.accepted())} replies so far")

    def accepted(self) -> list[dict[str, Any]]:
        return [s for s in self.run.sends() if s["outcome"] == "accepted"]

    def _holder(self, after: int = 0) -> tuple[Machine, int]:
        def newer() -> tuple[str, int] | None:
            h = self.watcher.holder()
            return h if h is not None and h[1] > after else None

        name, epoch = wait_for(newer, 60, "an awake machine")
        return next(m for m in self.run.mesh.machines if m.name == name), epoch

    def _first_reply(self, heir: Machine, epoch: int, since: float) -> float:
        """Seconds from ``since`` (wall time) to the first reply accepted at ``epoch``
        (a sink that takes no epochs: the first one ``heir`` sent since then)."""
        heir_id = heir.status()["machine_id"]

        def first() -> float | None:
            return min(
                (
                    s["time"]
                    for s in self.accepted()
                    if (s["epoch"] or 0) >= epoch
                    or (s["epoch"] is None and s["poller"] == heir_id and s["time"] >= since)
                ),
                default=None,
            )

        return round(wait_for(first, 60, f"a reply at epoch {epoch}") - since, 2)

    def _standby_again(self, m: Machine) -> None:
        wait_for(lambda: _answers(m) in ("standby",), 60, f"{m.name} back as a standby")

    def _in_sync(self) -> None:
        """Only standbys in sync take over by themselves: a fault lands once all are."""
        wait_for(self.run.mesh.synced_holder, 60, "every standby in sync", SYNC_POLL_S)

    def failover(self) -> None:
        self._in_sync()
        victim, epoch = self._holder()
        self.step(f"kill -9 the awake machine, {victim.name} (epoch {epoch}): node and supervisor")
        self.watcher.poll(victim)
        self.progress.notes[victim.name] = "killed"
        kept = pushed_state(self.run)  # the agent's state the remote had at the kill
        killed_at = time.time()
        victim.send_signal(signal.SIGKILL)  # the whole machine: nothing restarts it
        self.watcher.died(victim)
        heir, new_epoch = self._holder(after=epoch)
        self.measured["failover_s"] = self._first_reply(heir, new_epoch, killed_at)
        self._state_kept(heir, kept)
        lost = self.measured["state_lost"]
        state = f"{lost} LOST of the" if lost else "all"
        self.done(
            f"{heir.name} took over at epoch {new_epoch}; first reply "
            f"{self.measured['failover_s']:.2f} s after the kill (lease ttl {TTL_MS / 1000:.0f} s);"
            f" agent state: {state} {len(kept)} turns pushed before the kill"
        )
        self.step(f"`baton up` on {victim.name} again: it rejoins as a standby")
        self.progress.notes[victim.name] = "restarting"
        wait_for(lambda: not victim.survivors(), 30, f"{victim.name}'s processes to end")
        victim.up()
        self._standby_again(victim)
        self.progress.notes.pop(victim.name)
        self.done("standing by")
        self.victim = victim

    def _state_kept(self, heir: Machine, kept: list[str]) -> None:
        """The new holder's agent state starts with every turn the remote had at the kill
        (what the dead holder had not pushed yet is lost with it: at most one
        state_sync_ms of turns)."""
        try:
            wait_for(lambda: state_lines(heir)[: len(kept)] == kept, 60, "the agent's state")
            lost = 0
        except TimeoutError:
            have = state_lines(heir)
            lost = len(kept) - sum(1 for a, b in zip(have, kept, strict=False) if a == b)
        self.measured["state_turns"], self.measured["state_lost"] = len(kept), lost

    def handoff(self) -> None:
        self.steady(20)
        target = self.victim
        self.step(f"`baton wakeup` on {target.name}: a planned handoff")
        asked = time.time()
        out = target.json("wakeup", timeout=180)
        if out.get("outcome") != "handed_over":
            raise RuntimeError(f"wakeup on {target.name}: {out}")
        self.measured["handoff_s"] = self._first_reply(target, int(out["epoch"]), asked)
        self.done(
            f"awake at epoch {out['epoch']}; lease moved in {out['took_ms'] / 1000:.2f} s, "
            f"first reply after {self.measured['handoff_s']:.2f} s"
        )

    def pause(self) -> None:
        self.steady(20)
        run = self.run
        self._in_sync()
        sleeper, epoch = self._holder()
        self.step(f"pause {sleeper.name} (SIGSTOP) past its lease, then resume it")
        self.watcher.poll(sleeper)
        run.paused.add(sleeper.name)
        self.progress.notes[sleeper.name] = "paused"
        paused_at = time.monotonic()
        sleeper.send_signal(signal.SIGSTOP)
        heir, new_epoch = self._holder(after=epoch)
        past = paused_at + 1.5 * TTL_MS / 1000  # well past the lease it held
        wait_for(lambda: time.monotonic() > past, 60, "the pause to outlast the lease")
        sleeper.send_signal(signal.SIGCONT)
        run.paused.discard(sleeper.name)
        self.progress.notes.pop(sleeper.name)
        self._standby_again(sleeper)
        self.done(
            f"{heir.name} took over at epoch {new_epoch}; "
            f"{sleeper.name} woke after {time.monotonic() - paused_at:.1f} s and stood down"
        )

    def pool(self) -> None:
        """The pool on, and "move this to charlie" said in a topic: baton answers it, and
        the topic's later messages run on charlie (its node counts them)."""
        self.steady(20)
        run = self.run
        awake, _ = self._holder()
        target = next(m for m in reversed(run.mesh.machines) if m is not awake)
        topic = TOPICS[-1]
        self.step(f'the pool on; "move this to {target.name}" said in "{topic}"')
        awake.json("pool", "enable")
        ran_before = target.counter("pool.ran")
        said = f"move this to {target.name}"
        body = {"text": said, "client_id": "demo-move"}
        message_id = int(run.chat.api(f"/api/topics/{topic}/messages", body)["message_id"])
        run.history.add("posted", message_id=message_id, topic=topic)

        def answer() -> str | None:
            return next(
                (m["text"] for m in run.topic(topic) if m.get("reply_to") == message_id), None
            )

        reply = wait_for(answer, 60, f'the answer to "{said}"')
        # (the topic may have been placed there already, by load, once the pool was on)
        if not reply.startswith((f"Moving this topic to {target.name}", "This topic stays on")):
            raise RuntimeError(f'"{said}" was answered "{reply}"')
        topics = NodeClient(awake.home).get("/pool")["topics"]  # the holder's view
        pinned = [t for t in topics if t["reason"] == "pinned"]
        if [t["nickname"] for t in pinned] != [target.name]:
            raise RuntimeError(f"the pool's pins after the move: {pinned} of {topics}")

        def later() -> int:
            bot = [m for m in run.topic(topic) if m["from"] == "bot"]
            return sum(1 for m in bot if m["reply_to"] > message_id)

        wait_for(lambda: later() >= 3, 60, f"3 replies in {topic} after the move")
        ran = target.counter("pool.ran") - ran_before
        self.measured["pool_moved_to"] = target.name
        self.done(f'"{reply}"; {pinned[0]["topic"]} pinned there; {target.name} ran {ran} runs')

    def finish(self, loader: Loader) -> dict[str, Any]:
        run, watcher = self.run, self.watcher
        self.steady(20)
        self.step("stop the load; wait for every message to be answered; judge the run")
        loader.stop()
        if loader.error is not None:
            raise RuntimeError(f"the loader failed: {loader.error!r}")
        answered = True
        try:
            wait_for(lambda: all_answered(run), 60, "every message answered", 0.25)
        except TimeoutError:
            answered = False  # the verdict names what was lost
        for m in run.mesh.machines:
            watcher.poll(m)
        report, sends = verdict(run)
        outcomes = [s["outcome"] for s in sends]
        summary = {
            "ok": report.ok and answered and self.measured.get("state_lost") == 0,
            "messages": report.posted,
            "replies": report.accepted,
            "lost": len(report.lost),
            "duplicated": len(report.duplicated),
            "reported_doubles": len(report.reported),
            "stale_refused": outcomes.count("stale"),
            "repeats_refused": outcomes.count("repeat"),
            "stale_accepted": len(report.stale_accepted),
            "epochs_backwards": len(report.epochs_backwards),
            "overlapping": len(report.overlapping),
            "failover_s": self.measured.get("failover_s"),
            "handoff_s": self.measured.get("handoff_s"),
            "pool_moved_to": self.measured.get("pool_moved_to"),
            "transcript_loss": transcript_loss(run, TOPICS),
            # the agent's state (StateSync): turns the remote held at the kill, and those
            # of them the new holder's state directory lacked
            "state_turns": self.measured.get("state_turns"),
            "state_lost": self.measured.get("state_lost"),
            # the highest epoch a machine held (a sink like Telegram takes no epochs)
            "epoch": max(
                [int(e["epoch"]) for e in run.history.of("role") if e.get("role") == "awake"]
                + [s["epoch"] or 0 for s in sends],
                default=0,
            ),
        }
        if not report.ok:
            summary["examples"] = report.summary()["examples"]
        self.done("every promise kept" if summary["ok"] else "PROMISE BROKEN")
        return summary


def _answers(m: Machine) -> str | None:
    """``m``'s role, or None while it does not answer."""
    try:
        return str(m.status(timeout=2.0)["role"])
    except Exception:
        return None
