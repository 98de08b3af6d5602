"""DeliveryResults: how the DeliveryActor carries out what its jobs' results (agent
runs, sends, delivery checks) mean. A part of the DeliveryActor (a mixin: it runs on
the actor's thread and works on the actor's state). What a result means is decided in
the core (baton.core.delivery_steps: after_agent, after_send, after_check, as enums);
this part records, counts, reports and schedules accordingly:

- a delivered send is recorded (and its committed marker told), even another term's;
- a send that surely delivered nothing is sent again, after the channel's retry_after
  for a 429 (which holds every send back), and is never ambiguous;
- a reply that may have arrived at a sink that cannot say is reported as an ambiguous
  send (counted, an alarm, a log event) and then resent or recorded by policy;
- a stale refusal ends the term at once.
"""

from __future__ import annotations

import logging
from typing import Any

from baton.actors.delivery_messages import AgentDone, CheckDone, SendDone
from baton.actors.marker_book import MarkerBook
from baton.core import delivery
from baton.core.alarms import AlarmBook
from baton.core.clock import Clock
from baton.core.delivery_steps import (
    AfterAgent,
    AfterCheck,
    AfterSend,
    after_agent,
    after_check,
    after_send,
)
from baton.core.ledger import LedgerEntry, LedgerState
from baton.core.settings import Settings
from baton.metrics import Counters

log = logging.getLogger("baton.delivery")

RETRY_UNKNOWN_MS = 500
NOTHING_DELIVERED = (
    AfterSend.STAND_DOWN,
    AfterSend.RETRY,
    AfterSend.RATE_LIMITED,
    AfterSend.NOT_SENT,
)


class DeliveryResults:
    # the DeliveryActor's state this part works on
    settings: Settings
    ledger: Any  # IndexedLedger
    book: MarkerBook
    clock: Clock
    counters: Counters
    alarms: AlarmBook
    term: int | None
    last_epoch: int | None
    fenced_at: int
    mine: set[str]
    unsure: set[tuple[str, int]]
    retry_at: dict[str, float]
    sends_held_until: float

    # the DeliveryActor's own steps
    def _ours(self, token: int, key: str) -> bool:
        raise NotImplementedError

    def _pump(self) -> None:
        raise NotImplementedError

    def _prepare(self, entry: LedgerEntry, replies: tuple[str, ...]) -> None:
        raise NotImplementedError

    def _term_changed(self, epoch: int | None) -> None:
        raise NotImplementedError

    def _wall_ms(self) -> float:
        raise NotImplementedError

    def _wall_s(self) -> float:
        raise NotImplementedError

    def _agent_done(self, done: AgentDone) -> None:
        ours = self._ours(done.token, done.key)
        entry = self.ledger.get(done.key)
        pending = entry is not None and entry.state.rank <= LedgerState.PROCESSING.rank
        step = after_agent(ours, self.term is not None, pending, done.replies is not None)
        if step is AfterAgent.IGNORE:
            return  # another term's run (the message stays for whoever holds), or done
        assert entry is not None
        if step is AfterAgent.FAILED:
            self.counters.inc("delivery.agent_failed")
            entry = self.ledger.fail(done.key, done.error or "unknown", self._wall_ms())
            log.warning("agent failed on %s (attempt %d): %s", done.key, entry.attempts, done.error)
            delay = delivery.retry_delay_ms(entry.attempts)
            self.retry_at[done.key] = self.clock.monotonic_ms() + delay
        else:
            assert done.replies is not None
            self._prepare(entry, done.replies)
        self._pump()

    def _send_done(self, done: SendDone) -> None:
        ours = self._ours(done.token, done.key)
        outcome, now = done.outcome, self.clock.monotonic_ms()
        status = None if outcome is None else outcome.status
        step = after_send(ours, status, done.error, done.not_delivered, done.retry_after_ms)
        if step is AfterSend.IGNORE:
            return
        if step in NOTHING_DELIVERED:
            self.unsure.discard((done.key, done.index))
        match step:
            case AfterSend.COMMIT:
                assert outcome is not None
                self._commit(done.key, done.index, outcome.message_id, done.epoch or 1)
            case AfterSend.STAND_DOWN:  # stand down now, not after the lease notices
                self.fenced_at = max(self.fenced_at, done.epoch or 0)
                self._term_changed(None)
            case AfterSend.RETRY:
                self.retry_at[done.key] = now + RETRY_UNKNOWN_MS
            case AfterSend.RATE_LIMITED:  # the chat's limit holds every send back
                self.counters.inc("delivery.rate_limited")
                self.sends_held_until = max(self.sends_held_until, now + done.retry_after_ms)
                wait_s = done.retry_after_ms / 1000
                self.alarms.raise_alarm("rate_limited", f"waiting {wait_s:g} s", self._wall_s())
                self.retry_at[done.key] = max(now + RETRY_UNKNOWN_MS, self.sends_held_until)
            case AfterSend.NOT_SENT:
                self.counters.inc("delivery.not_sent")
                self.retry_at[done.key] = max(now + RETRY_UNKNOWN_MS, self.sends_held_until)
            case AfterSend.REJECTED:  # sending again cannot help: done, logged, counted
                self.counters.inc("delivery.rejected")
                log.error("%s reply %d cannot be delivered: %s", done.key, done.index, done.error)
                self._commit(done.key, done.index, None, self.last_epoch or 1)
            case AfterSend.UNKNOWN:  # still unsure: ask the sink before sending again
                self.counters.inc("delivery.send_unknown")
                self.retry_at[done.key] = now + RETRY_UNKNOWN_MS
        self._pump()

    def _check_done(self, done: CheckDone) -> None:
        ours = self._ours(done.token, done.key)
        policy = self.settings.ambiguous_policy
        step = after_check(ours, done.error is not None, done.delivered, policy)
        match step:
            case AfterCheck.IGNORE:
                return
            case AfterCheck.RETRY:
                self.counters.inc("delivery.check_failed")
                self.retry_at[done.key] = self.clock.monotonic_ms() + RETRY_UNKNOWN_MS
                return
            case AfterCheck.AMBIGUOUS_SEND | AfterCheck.AMBIGUOUS_COMMIT:
                self._ambiguous(done.key, done.index, step)
        if step in (AfterCheck.SEND, AfterCheck.AMBIGUOUS_SEND):
            self.unsure.discard((done.key, done.index))
            self.mine.add(done.key)  # the later replies are ours to send now
        else:
            unknown = "_unknown" if step is AfterCheck.AMBIGUOUS_COMMIT else ""
            self.counters.inc(f"delivery.resumed_commit{unknown}")
            self._commit(done.key, done.index, None, self.last_epoch or 1)
        self._pump()

    def _ambiguous(self, key: str, index: int, step: AfterCheck) -> None:
        """A reply that may have reached a sink that cannot say: reported, never hidden
        (counted, an alarm, and a log event a checker can match to a double)."""
        self.counters.inc("delivery.ambiguous")
        resend = step is AfterCheck.AMBIGUOUS_SEND
        action = "send" if resend else "commit_unknown"
        what = "sent again" if resend else "recorded as delivered"
        detail = f"{key} reply {index} may have arrived already; {what}"
        self.alarms.raise_alarm("ambiguous_send", detail, self._wall_s())
        event = {"kind": "ambiguous_send", "key": key, "index": index, "action": action}
        event["message_id"] = int(key.rsplit(":", 1)[1])
        log.warning("ambiguous send: %s", detail, extra={"event": event})

    def _commit(self, key: str, index: int, message_id: int | None, epoch: int) -> None:
        entry = self.ledger.commit(key, index, message_id, epoch, self._wall_ms())
        self.counters.inc("delivery.committed")
        self.book.tell(entry, "committed", epoch, index, self.clock.monotonic_ms())
        self.unsure.discard((key, index))
        # The replies after this one were never tried: every holder sends a message's
        # replies in order, each only once the one before it is known delivered.
        self.mine.add(key)
