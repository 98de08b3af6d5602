"""UserQueue: messages handed to this machine for the channel (``baton send``), kept in
the ledger's durable queue until the channel has them.

On the holder an item is posted to the channel (idempotent: the item id is the post's
client id, so a retry after a lost answer posts once). On a standby it is forwarded to
the holder over the wire ("user_message"); the holder queues it durably itself, posts
it, and answers "user_message_ack", on which the standby drops it. With no holder known
the item waits in the queue; every queued item is retried every RETRY_MS. Part of the
DeliveryActor (it runs on that actor's thread and shares its ledger).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from baton.actors.delivery_jobs import DeliveryJobs
from baton.actors.delivery_messages import PostDone
from baton.adapters.metrics import Counters
from baton.core.clock import Clock
from baton.core.errors import BadRequest, MarkerRefused
from baton.core.lease_types import LeaseChanged
from baton.core.ledger import MessageProcessingLedger
from baton.wire.envelope import Envelope
from baton.wire.marker_transport import MAX_FORWARD_TEXT, ReplyMarkerTransport, open_forward

log = logging.getLogger("baton.delivery")

RETRY_MS = 1000
POSTED_KEPT = 1000
TOPIC = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class UserQueue:
    def __init__(
        self,
        me: str,
        *,
        ledger: MessageProcessingLedger,
        jobs: DeliveryJobs,
        transport: ReplyMarkerTransport,
        clock: Clock,
        counters: Counters,
        rng: Callable[[int], bytes],
    ) -> None:
        self.me = me
        self.ledger = ledger
        self.jobs = jobs
        self.transport = transport
        self.clock = clock
        self.counters = counters
        self.rng = rng
        self.holder: str | None = None
        self.tried: dict[str, float] = {}  # item -> local ms of the last attempt
        self.origin: dict[str, str] = {}  # item -> the standby that forwarded it
        self.posted: OrderedDict[str, int] = OrderedDict()

    def put(self, topic: str, text: str, holding: bool) -> str:
        if not TOPIC.fullmatch(topic):
            raise BadRequest("topic: 1 to 64 letters, digits, '.', '_' or '-'")
        if not text.strip() or len(text.encode("utf-8", "replace")) > MAX_FORWARD_TEXT:
            raise BadRequest(f"text: must not be empty or larger than {MAX_FORWARD_TEXT} bytes")
        item_id = self.rng(12).hex()
        self.ledger.queue_put(item_id, topic, text, self.clock.wall_s() * 1000)
        self.counters.inc("user_queue.queued")
        self.flush(holding)
        return item_id

    def status(self, item_id: str) -> dict[str, Any]:
        if item_id in self.posted:
            return {"item_id": item_id, "status": "posted", "message_id": self.posted[item_id]}
        queued = any(i.item_id == item_id for i in self.ledger.queue_items())
        return {"item_id": item_id, "status": "queued" if queued else "unknown"}

    def flush(self, holding: bool) -> None:
        now = self.clock.monotonic_ms()
        for item in self.ledger.queue_items():
            if now - self.tried.get(item.item_id, -RETRY_MS) < RETRY_MS:
                continue
            if holding:
                self.tried[item.item_id] = now
                self.jobs.post(item.item_id, item.topic, item.text)
            elif self.holder is not None and self.holder != self.me:
                self.tried[item.item_id] = now
                if self.transport.forward(self.holder, item.item_id, item.topic, item.text):
                    self.counters.inc("user_queue.forwarded")

    def on(self, message: PostDone | LeaseChanged, holding: bool) -> None:
        if isinstance(message, LeaseChanged):
            self.holder = message.holder
            self.tried.clear()  # a new holder: try everything at once
            self.flush(holding)
        elif message.message_id is None:
            self.counters.inc("user_queue.post_failed")
            log.warning("posting %s failed: %s", message.item_id, message.error)
        else:
            self._posted(message.item_id, message.message_id)
            origin = self.origin.pop(message.item_id, None)
            if origin is not None:
                self.transport.ack(origin, message.item_id, message.message_id)

    def received(self, env: Envelope, holding: bool) -> None:
        if env.type == "user_message_ack":
            self._posted(env.body["item_id"], env.body["message_id"])
            return
        if env.type != "user_message":
            self.counters.inc("wire.unhandled")
            return
        try:
            item_id, topic, text = open_forward(env)
        except MarkerRefused as exc:
            self.counters.inc("user_queue.refused")
            log.warning("user message from %s refused: %s", env.sender, exc.detail)
            return
        if not holding:  # the standby tries again, with whoever holds by then
            self.counters.inc("user_queue.not_holder")
            return
        if item_id in self.posted:  # our ack was lost: say it again
            self.transport.ack(env.sender, item_id, self.posted[item_id])
            return
        self.ledger.queue_put(item_id, topic, text, self.clock.wall_s() * 1000)
        self.origin[item_id] = env.sender
        self.tried.pop(item_id, None)
        self.flush(holding)

    def _posted(self, item_id: str, message_id: int) -> None:
        self.ledger.queue_remove(item_id)
        self.tried.pop(item_id, None)
        self.posted[item_id] = message_id
        self.posted.move_to_end(item_id)
        while len(self.posted) > POSTED_KEPT:
            self.posted.popitem(last=False)
        self.counters.inc("user_queue.posted")
