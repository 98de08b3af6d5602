"""FencedOutbox: the only way this machine sends a reply to the channel. (Delivery
checks and `baton send` posts go to the channel directly, from DeliveryJobs: they
send no reply.)

A reply leaves only while this machine holds the lease and is inside its local deadline:
the LeaseGate is asked right before each send, and the reply is stamped with the epoch it
answered and with the reply's deterministic key. A sink that refuses the epoch as stale
has seen a newer holder act: the outbox tells the lease (``on_fenced``), which stands
this machine down at once. Every send is counted by outcome
(``outbox.accepted|repeat|stale|not_holder|unknown``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from baton.adapters.metrics import Counters
from baton.channels.base import Channel, ChannelError, OutboundReply, SendOutcome
from baton.core.clock import Clock
from baton.core.errors import BatonError
from baton.holder.gate import LeaseGate

log = logging.getLogger("baton.outbox")


class NotHolder(BatonError):
    """This machine does not hold the lease now: nothing was sent."""

    code = "not_holder"


class FencedOutbox:
    def __init__(
        self,
        channel: Channel,
        gate: LeaseGate,
        clock: Clock,
        counters: Counters,
        on_fenced: Callable[[int, int], None],
    ) -> None:
        self.channel = channel
        self.gate = gate
        self.clock = clock
        self.counters = counters
        self.on_fenced = on_fenced

    def send(
        self, chat_id: int, thread_id: int, reply_to: int, text: str, reply_key: str
    ) -> tuple[int, SendOutcome]:
        """(epoch, outcome) of one send. Raises NotHolder (nothing sent) or ChannelError
        (the outcome is unknown)."""
        epoch = self.gate.current(self.clock.monotonic_ms())
        if epoch is None:
            self.counters.inc("outbox.not_holder")
            raise NotHolder()
        reply = OutboundReply(chat_id, thread_id, reply_to, text, epoch, reply_key)
        try:
            outcome = self.channel.send(reply)
        except ChannelError:
            self.counters.inc("outbox.unknown")
            raise
        self.counters.inc(f"outbox.{outcome.status}")
        if outcome.status == "stale":
            highest = outcome.highest_epoch or epoch + 1
            log.warning("the channel refused epoch %d as stale (it has seen %d)", epoch, highest)
            self.on_fenced(epoch, highest)
        return epoch, outcome
