"""DeliveryResults: how the DeliveryActor takes the results of its jobs (agent runs,
sends, delivery checks). A part of the DeliveryActor (a mixin: it runs on the actor's
thread and works on the actor's state), kept apart because it is the one place that
decides what a result means:

- a result whose token the topic no longer waits on is dropped, except a delivered
  send, which is always recorded (it is the truth about the sink);
- a send that surely delivered nothing (a refused connection, a 429) is sent again,
  after the channel's retry_after for a 429, and is never ambiguous;
- a reply that may have arrived at a sink that cannot say is reported as an ambiguous
  send (counted, an alarm, a log event) and then resent or recorded by policy;
- a stale refusal ends the term at once.
"""

from __future__ import annotations

import logging
from typing import Any

from baton.actors.delivery_jobs import REJECTED
from baton.actors.delivery_messages import AgentDone, CheckDone, SendDone
from baton.actors.marker_book import MarkerBook
from baton.core import delivery
from baton.core.alarms import AlarmBook
from baton.core.clock import Clock
from baton.core.ledger import LedgerEntry, LedgerState
from baton.core.settings import Settings
from baton.metrics import Counters

log = logging.getLogger("baton.delivery")

RETRY_UNKNOWN_MS = 500


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
        if not self._ours(done.token, done.key):
            return  # another epoch's run: the message stays pending for whoever holds
        entry = self.ledger.get(done.key)
        if self.term is None or entry is None or entry.state.rank > LedgerState.PROCESSING.rank:
            return  # not holding now (it runs again when we do), or done meanwhile
        if done.replies is None:
            self.counters.inc("delivery.agent_failed")
            entry = self.ledger.fail(done.key, done.error or "unknown", self._wall_ms())
            log.warning("agent failed on %s (attempt %d): %s", done.key, entry.attempts, done.error)
            delay = delivery.retry_delay_ms(entry.attempts)
            self.retry_at[done.key] = self.clock.monotonic_ms() + delay
        else:
            self._prepare(entry, done.replies)
        self._pump()

    def _send_done(self, done: SendDone) -> None:
        ours = self._ours(done.token, done.key)
        outcome, now = done.outcome, self.clock.monotonic_ms()
        if outcome is not None and outcome.status in ("accepted", "repeat"):
            self._commit(done.key, done.index, outcome.message_id, done.epoch or 1)
        elif not ours:
            return
        elif outcome is not None and outcome.status == "stale":
            # A newer holder has acted: stand down now, not after the lease notices.
            self.unsure.discard((done.key, done.index))  # refused: not delivered
            self.fenced_at = max(self.fenced_at, done.epoch or 0)
            self._term_changed(None)
        elif done.error == "not_holder":
            self.unsure.discard((done.key, done.index))  # nothing was sent
            self.retry_at[done.key] = now + RETRY_UNKNOWN_MS
        elif done.not_delivered:
            self.unsure.discard((done.key, done.index))  # surely not delivered: send again
            if done.retry_after_ms:  # a 429: the chat's limit holds every send back
                self.counters.inc("delivery.rate_limited")
                self.sends_held_until = max(self.sends_held_until, now + done.retry_after_ms)
                wait_s = done.retry_after_ms / 1000
                self.alarms.raise_alarm("rate_limited", f"waiting {wait_s:g} s", self._wall_s())
            else:
                self.counters.inc("delivery.not_sent")
            self.retry_at[done.key] = max(now + RETRY_UNKNOWN_MS, self.sends_held_until)
        elif done.error is not None and done.error.startswith(REJECTED):
            # Refused for good (thread deleted, text refused): sending again cannot help.
            # Recorded as done with no message, logged and counted, so nothing waits on it.
            self.counters.inc("delivery.rejected")
            log.error("%s reply %d cannot be delivered: %s", done.key, done.index, done.error)
            self._commit(done.key, done.index, None, self.last_epoch or 1)
        else:
            self.counters.inc("delivery.send_unknown")  # ask the sink before sending again
            self.retry_at[done.key] = now + RETRY_UNKNOWN_MS
        self._pump()

    def _check_done(self, done: CheckDone) -> None:
        if not self._ours(done.token, done.key):
            return
        if done.error is not None:
            self.counters.inc("delivery.check_failed")
            self.retry_at[done.key] = self.clock.monotonic_ms() + RETRY_UNKNOWN_MS
            return
        action = delivery.resume(done.delivered, self.settings.ambiguous_policy)
        if done.delivered is None:
            self._ambiguous(done.key, done.index, action)
        if action == "send":
            self.unsure.discard((done.key, done.index))
            self.mine.add(done.key)  # the later replies are ours to send now
        else:
            self.counters.inc(f"delivery.resumed_{action}")
            self._commit(done.key, done.index, None, self.last_epoch or 1)
        self._pump()

    def _ambiguous(self, key: str, index: int, action: str) -> None:
        """A reply that may have reached a sink that cannot say: reported, never hidden
        (counted, an alarm, and a log event a checker can match to a double)."""
        self.counters.inc("delivery.ambiguous")
        what = "sent again" if action == "send" else "recorded as delivered"
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
