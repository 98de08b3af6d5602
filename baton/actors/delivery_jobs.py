"""DeliveryJobs: the blocking work of delivery, done off the DeliveryActor's thread.

Agent runs go to a pool as wide as ``agent_workers``; sends, delivery checks and user
posts to a small I/O pool. Each job tells its result to the actor as a message and
never raises: an error is part of the result. After ``stop()`` nothing new starts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pykka

from baton.actors.delivery_messages import AgentDone, CheckDone, PostDone, SendDone
from baton.agents.base import AgentFailed, AgentMessage, Turn
from baton.channels.base import (
    Channel,
    ChannelError,
    ChannelRejected,
    NotDelivered,
    RateLimited,
)
from baton.core.delivery_steps import REJECTED_PREFIX
from baton.core.errors import BatonError
from baton.core.ledger import LedgerEntry
from baton.holder.outbox import FencedOutbox, NotHolder

log = logging.getLogger("baton.delivery")

IO_THREADS = 4

AgentResult = tuple[tuple[str, ...] | None, str | None]  # (replies, None) or (None, why)


class DeliveryJobs:
    def __init__(
        self,
        run_agent: Callable[[AgentMessage, Sequence[Turn]], list[str]],
        outbox: FencedOutbox,
        channel: Channel,
        agent_workers: int,
    ) -> None:
        self.run_agent = run_agent
        self.outbox = outbox
        self.channel = channel
        self.agents = ThreadPoolExecutor(agent_workers, thread_name_prefix="baton-agent")
        self.io = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="baton-send")
        self.actor: pykka.ActorRef[Any] | None = None  # set by wire()
        self.stopped = False

    def wire(self, actor: pykka.ActorRef[Any]) -> None:
        """Where results go: the DeliveryActor, which takes these jobs and so starts
        after them. The composition root wires it before anything ticks, so no job runs
        (and no result is told) before."""
        self.actor = actor

    def _tell(self, message: object) -> None:
        if self.actor is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                self.actor.tell(message)

    def _submit(
        self,
        pool: ThreadPoolExecutor,
        job: Callable[[], Any],
        failed: Callable[[str], Any],
        tell: Callable[[Any], None] | None = None,
    ) -> None:
        """Run ``job`` and tell its result (to the DeliveryActor, or to ``tell``); if it
        raises (a bug), tell ``failed(why)`` instead, so whoever waits on it is never
        stuck."""
        if self.stopped:
            return
        told = self._tell if tell is None else tell

        def run() -> None:
            try:
                result = job()
            except Exception as exc:
                log.exception("delivery job failed")
                result = failed(f"{type(exc).__name__}: {exc}")
            told(result)

        with contextlib.suppress(RuntimeError):  # the pool is shutting down
            pool.submit(run)

    def agent(self, token: int, entry: LedgerEntry, history: Sequence[Turn]) -> None:
        message = AgentMessage(entry.topic, entry.message_id, entry.text, entry.sender, entry.kind)
        self.run(
            message,
            history,
            lambda result: self._tell(AgentDone(token, entry.key, *result)),
        )

    def run(
        self,
        message: AgentMessage,
        history: Sequence[Turn],
        done: Callable[[AgentResult], None],
    ) -> None:
        """Run the agent on ``message`` in the agent pool and call ``done`` with (the
        replies, None) or (None, why) once it ends: the pool's runs, here or for a
        peer, share the agent workers with delivery's own."""

        def job() -> AgentResult:
            try:
                return tuple(self.run_agent(message, history)), None
            except AgentFailed as exc:
                return None, exc.detail

        self._submit(self.agents, job, lambda why: (None, why), done)

    def send(self, token: int, entry: LedgerEntry, index: int) -> None:
        reply = entry.replies[index]

        def job() -> SendDone:
            try:
                epoch, outcome = self.outbox.send(
                    entry.chat_id, entry.thread_id, entry.message_id, reply.text, reply.reply_key
                )
            except NotHolder:
                return SendDone(token, entry.key, index, None, None, "not_holder")
            except ChannelRejected as exc:
                return SendDone(token, entry.key, index, None, None, REJECTED_PREFIX + exc.detail)
            except NotDelivered as exc:
                wait = exc.retry_after_s * 1000 if isinstance(exc, RateLimited) else 0.0
                return SendDone(token, entry.key, index, None, None, exc.detail, True, wait)
            except ChannelError as exc:
                return SendDone(token, entry.key, index, None, None, exc.detail or "unknown")
            return SendDone(token, entry.key, index, epoch, outcome)

        self._submit(self.io, job, lambda why: SendDone(token, entry.key, index, None, None, why))

    def check(self, token: int, entry: LedgerEntry, index: int) -> None:
        reply_key = entry.replies[index].reply_key

        def job() -> CheckDone:
            try:
                return CheckDone(token, entry.key, index, self.channel.delivered(reply_key))
            except ChannelError as exc:
                return CheckDone(token, entry.key, index, None, exc.detail or "unknown")

        self._submit(self.io, job, lambda why: CheckDone(token, entry.key, index, None, why))

    def post(self, item_id: str, topic: str, text: str) -> None:
        def job() -> PostDone:
            try:
                return PostDone(item_id, self.channel.post_user_message(topic, text, item_id))
            except BatonError as exc:
                return PostDone(item_id, None, exc.detail)

        self._submit(self.io, job, lambda why: PostDone(item_id, None, why))

    def stop(self) -> None:
        self.stopped = True
        self.agents.shutdown(wait=False, cancel_futures=True)
        self.io.shutdown(wait=False, cancel_futures=True)
