"""Delivery's part of a node: the channel named by ``channel``, the ledger, the agent
runner, the FencedOutbox, the DeliveryActor and the poller; the transcripts, the
LiveTailBuffer and the LiveTailActor. The node composes them.

A machine without a channel has none of this (it answers nothing). Without a lease
store there is no failover: the machine the registry names awake acts with epoch 1 for
as long as it runs, and the others never do.

The bot token (Telegram's, or the bundled chat service's for ``local:``) comes from
BATON_TELEGRAM_TOKEN or machine/telegram-token; the chat service's user token, with
which `baton send` posts as the user, from BATON_CHAT_USER_TOKEN or
machine/chat-user-token (files 0600; refused if others can read them). The secret
store of a later issue replaces these.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka

from baton.actors.delivery_actor import DeliveryActor
from baton.actors.delivery_jobs import DeliveryJobs
from baton.actors.delivery_messages import Polled
from baton.actors.lease_actor import FencedOut, WantInSync
from baton.actors.live_tail_actor import LiveTailActor
from baton.actors.pool_messages import RouteRun
from baton.adapters.metrics import Counters
from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.agents.base import Turn
from baton.agents.isolation import agent_environment, prepare_workdir, sandbox_prefix
from baton.agents.runner import AgentRunner
from baton.channels import open_channel
from baton.core.clock import Clock
from baton.core.errors import BatonError
from baton.core.ledger import LedgerEntry
from baton.core.live_tail import compile_redactions
from baton.core.settings import Settings
from baton.core.transcript_archive import DIR as ARCHIVE_DIR
from baton.holder.gate import LeaseGate
from baton.holder.outbox import FencedOutbox
from baton.holder.poller import ChannelPoller, Cursor
from baton.node.state_parts import state_remote
from baton.stores.files import check_private_dir, check_private_file, ensure_private_dir
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity
from baton.stores.ledger_sqlite import SqliteLedger
from baton.stores.secret_keys import system_keychain
from baton.stores.secret_store import SecretStore
from baton.stores.tail_sqlite import SqliteLiveTailBuffer
from baton.stores.transcript_archive import FileTranscriptArchive
from baton.stores.transcript_sqlite import SqliteTranscriptStore
from baton.wire.envelope import Envelope
from baton.wire.marker_transport import ReplyMarkerTransport
from baton.wire.tail_transport import LiveTailTransport

log = logging.getLogger("baton.delivery")

MAX_LONG_POLL_S = 10.0


def secret(path: Path, env: Mapping[str, str], name: str) -> str | None:
    """The secret in the environment variable ``name``, else in ``path`` (0600)."""
    if env.get(name):
        return env[name].strip()
    if path.exists():
        check_private_file(path)
        return path.read_text(encoding="utf-8").strip() or None
    return None


class AgentRoute:
    """Where delivery's agent runs go: the agent pool here, until the node gives the
    PoolActor (``pool``), which routes them (here too while the pool is off)."""

    def __init__(self, jobs: DeliveryJobs) -> None:
        self.jobs = jobs
        self.pool: pykka.ActorRef[Any] | None = None

    def __call__(self, token: int, entry: LedgerEntry, history: Sequence[Turn], term: int) -> None:
        if self.pool is not None:
            with contextlib.suppress(pykka.ActorDeadError):  # stopping: run it here
                self.pool.tell(RouteRun(token, entry, tuple(history), term))
                return
        self.jobs.agent(token, entry, history)


@dataclass
class DeliveryParts:
    actor: pykka.ActorRef[Any]
    tail: pykka.ActorRef[Any]
    poller: ChannelPoller
    runner: AgentRunner
    cursor: Cursor
    secret_names: tuple[str, ...]  # the secrets the agent is given (agent_secrets)
    agent_env: Callable[[], dict[str, str]]  # its whole environment, read anew
    jobs: DeliveryJobs  # the agent pool (the pool's runner runs in it too)
    route: AgentRoute  # where agent runs go: here, or through the pool

    ROUTES = ("marker", "marker_ack", "sync_request", "user_message", "user_message_ack")
    TAIL_ROUTES = ("tail", "tail_ack")

    @property
    def actors(self) -> tuple[pykka.ActorRef[Any], ...]:
        return (self.actor, self.tail)

    def start(self) -> None:
        """Poll the channel: the one part of delivery that acts on its own."""
        self.poller.start()

    def is_alive(self) -> bool:
        return self.actor.is_alive() and self.tail.is_alive() and self.poller.is_alive()

    def secrets_changed(self, names: set[str]) -> None:
        """Secrets changed in the store: if the agent is given one of them, its workers
        start anew with the new values (a busy one once its run is done)."""
        if names & set(self.secret_names):
            self.runner.set_env(self.agent_env())
            log.info("the agent's secrets changed: its workers start anew")

    def stop(self) -> None:
        self.poller.stop()
        self.actor.stop(timeout=10)
        self.tail.stop(timeout=10)
        self.runner.stop()  # the actors closed the stores they own


BOT_TOKEN_SECRET = "TELEGRAM_BOT_TOKEN"


def stored_secrets(
    paths: HomePaths, machine_id: str, names: tuple[str, ...], counters: Counters
) -> dict[str, str]:
    """The values of ``names`` in the secret store (those set). A store that cannot be
    read is counted and logged and gives nothing: it never stops the node's start."""
    if not names:
        return {}
    try:
        return SecretStore(paths, machine_id, system_keychain()).values(names)
    except BatonError as exc:
        counters.inc("secrets.unavailable")
        log.error("the secret store cannot be read: %s", exc.detail)
        return {}


def agent_secrets(
    settings: Settings, paths: HomePaths, machine_id: str, counters: Counters
) -> dict[str, str]:
    """The secrets ``agent_secrets`` names, as the agent's environment gets them."""
    found = stored_secrets(paths, machine_id, settings.agent_secrets, counters)
    missing = [n for n in settings.agent_secrets if n not in found]
    if missing:
        counters.inc("secrets.missing", len(missing))
        log.warning("agent_secrets names secrets not in the store: %s", ", ".join(missing))
    return found


def bot_token(
    paths: HomePaths, env: Mapping[str, str], machine_id: str, counters: Counters
) -> str | None:
    """The channel's bot token: the secret store's TELEGRAM_BOT_TOKEN, else (with a
    hint to move it there) BATON_TELEGRAM_TOKEN or machine/telegram-token."""
    found = stored_secrets(paths, machine_id, (BOT_TOKEN_SECRET,), counters)
    if found:
        return found[BOT_TOKEN_SECRET].strip()
    token = secret(paths.telegram_token, env, "BATON_TELEGRAM_TOKEN")
    if token is not None:
        log.info(
            "hint: keep the bot token in the secret store (baton secrets set %s), then "
            "drop BATON_TELEGRAM_TOKEN or %s",
            BOT_TOKEN_SECRET,
            paths.telegram_token,
        )
    return token


def build_delivery(
    settings: Settings,
    *,
    paths: HomePaths,
    identity: MachineIdentity,
    clock: Clock,
    send: Callable[[Envelope], bool],
    counters: Counters,
    lease_gate: LeaseGate | None,
    lease: pykka.ActorRef[Any] | None,
    founder: bool,
) -> DeliveryParts | None:
    if not settings.channel:
        return None
    me = identity.machine_id
    channel = open_channel(
        settings.channel,
        poller_id=me,
        telegram_token=bot_token(paths, os.environ, me, counters),
        counters=counters,
        chat_user_token=secret(paths.chat_user_token, os.environ, "BATON_CHAT_USER_TOKEN"),
    )
    gate = lease_gate
    if gate is None:  # no lease store: the founder acts with epoch 1, nobody else
        gate = LeaseGate()
        gate.publish(1 if founder else None, float("inf") if founder else None)

    def fenced(epoch: int, highest: int) -> None:
        if lease is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                lease.tell(FencedOut(epoch, highest))

    def want_in_sync(in_sync: tuple[str, ...]) -> None:
        if lease is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                lease.tell(WantInSync(in_sync))

    paths.tail_dir.mkdir(mode=0o700, exist_ok=True)
    check_private_dir(paths.tail_dir)
    with contextlib.ExitStack() as undo:  # whatever started is stopped if a later part fails
        ledger = SqliteLedger(paths.ledger)
        undo.callback(ledger.close)
        transcripts = SqliteTranscriptStore(paths.transcripts)
        undo.callback(transcripts.close)
        buffer = SqliteLiveTailBuffer(paths.tail_buffer)
        undo.callback(buffer.close)
        workdir = prepare_workdir(paths.root)
        state = paths.state_dir  # the agent's durable state (synchronized: StateSync)
        ensure_private_dir(state)
        archived = settings.transcript_archive == "on" and state_remote(settings) is not None
        if archived:  # before the agent's sandbox binds it read-only
            ensure_private_dir(state / ARCHIVE_DIR)

        def agent_env() -> dict[str, str]:
            return {
                **agent_environment(os.environ, settings.agent_env, workdir, state),
                **agent_secrets(settings, paths, me, counters),
            }

        runner = AgentRunner(
            settings.agent,
            workers=settings.agent_workers,
            timeout_s=settings.agent_timeout_ms / 1000,
            counters=counters,
            env=agent_env(),
            cwd=workdir,
            prefix=sandbox_prefix(
                settings.agent_sandbox, paths.root, workdir, settings.agent, state_dir=state
            ),
        )
        undo.callback(runner.stop)
        runner.start()
        outbox = FencedOutbox(channel, gate, clock, counters, fenced)
        jobs = DeliveryJobs(runner.run, outbox, channel, settings.agent_workers)
        route = AgentRoute(jobs)
        cursor = Cursor()
        redactions = compile_redactions(settings.redactions)
        tail_transport = LiveTailTransport(me, send, redactions, settings.max_frame_bytes // 4)
        tail = LiveTailActor.start(
            me,
            flush_ms=settings.live_tail_flush_ms if lease_gate is not None else 0,  # no failover
            frame_budget=settings.max_frame_bytes // 3,
            transcripts=transcripts,
            buffer=buffer,
            transport=tail_transport,
            key=identity.encryption_key,
            gate=gate,
            run_agent=route,
            clock=clock,
            counters=counters,
            archive=FileTranscriptArchive(state) if archived else None,
        )
        undo.callback(tail.stop, timeout=10)
        actor = DeliveryActor.start(
            me,
            settings=settings,
            ledger=ledger,
            jobs=jobs,
            gate=gate,
            cursor=cursor,
            markers=ReplyMarkerTransport(me, Ed25519Signer(me, identity.signing_key), send),
            verify=verify_ed25519,
            clock=clock,
            counters=counters,
            rng=os.urandom,
            tail=tail.tell,
            want_in_sync=want_in_sync,
        )
        jobs.wire(actor)
        undo.pop_all()
    long_poll_s = min(MAX_LONG_POLL_S, settings.lease_ttl_ms / 3000)
    poller = ChannelPoller(
        channel,
        gate=gate,
        clock=clock,
        cursor=cursor,
        deliver=lambda u, e: actor.tell(Polled(u, e)),
        counters=counters,
        long_poll_s=long_poll_s,
    )
    log.info("delivery: channel %s, agent %s", settings.channel, settings.agent)
    return DeliveryParts(
        actor, tail, poller, runner, cursor, settings.agent_secrets, agent_env, jobs, route
    )
