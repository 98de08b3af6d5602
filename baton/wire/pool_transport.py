"""PoolTransport: the pool on the CURVE wire (docs/DESIGN.md, "The pool").

Three envelopes, each stamped with the holder's lease epoch:
- ``pool_state`` {"state": PoolState.to_json()}: the pool's state, holder -> member.
  Not sealed: pins and placements name topics and machines, no conversation.
- ``pool_run`` {"run": [topic, key, machine_id, term, epoch], "box": base64}: the
  holder asks a machine to run a message of a topic (a TopicRun). The box is
  PyNaCl's SealedBox to the target's X25519 key of {"message": AgentMessage,
  "history": [[text, [reply, ...]], ...], "pull": bool}: the conversation is sealed
  end to end, to the one machine that runs it. The history is the newest turns that
  fit the budget; ``pull`` asks it to pull the agent's state before it runs.
- ``pool_result`` {"run": [...], "box": base64}: the target's answer, sealed to the
  holder: {"replies": [str, ...] | null, "error": str | null}.
- ``pool_ask`` {"id", "op", "args"} and ``pool_answer`` {"id", "answer"}: a question
  of the HTTP routes or the CLI, from a machine to the holder, and its answer
  (baton.actors.pool_queries).
- ``pool_release`` {"topic"} and ``pool_released`` {"topic"}: the holder asks a
  topic's old machine to queue its agent state now; it has (baton.actors.pool_handoff).
- ``pool_hello`` {"boot": str, "agent": bool}: a machine's runner to the holder, this
  run of its process (random at start; a holder that sees it change takes back every
  run in flight there: they died with the process before) and whether it runs agents
  (a machine that does not is never placed on).

Invariants: ``open_*`` return only well-formed values (a result's replies as the agent's
own contract allows them: 1 to 10 non-blank strings, each valid Unicode and within the
agent's limit) ; a PoolState no newer in term
than the envelope's epoch; a run whose term is the envelope's epoch and whose machine
is its sender or recipient as the kind says) or raise PoolRefused; ``send_*`` raise
ValueError past the wire's frame limit (the caller counts it).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import nacl.exceptions
import nacl.public

from baton.agents.base import AgentFailed, AgentMessage, Turn
from baton.agents.builtin import check_replies
from baton.core import safejson
from baton.core.errors import PoolRefused
from baton.core.inbound import MESSAGE_KINDS
from baton.core.pool_router import TopicRun
from baton.core.pool_state import MAX_EPOCH, MAX_ID_CHARS, PoolState
from baton.wire.envelope import Envelope, make_envelope, new_message_id

MAX_HISTORY = 1000  # turns a run carries, at most (the live tail's HISTORY_LIMIT)
MAX_REPLIES = 1000  # replies of a turn or a result, at most
MAX_ERROR_CHARS = 2000


class PoolTransport:
    def __init__(
        self,
        me: str,
        send: Callable[[Envelope], bool],
        rng: Callable[[int], bytes] = os.urandom,
        *,
        budget: int = 1 << 19,
    ) -> None:
        self.me = me
        self.send = send
        self.rng = rng
        self.budget = budget  # bytes of JSON a run's box may hold (before sealing)

    def send_state(self, to: str, epoch: int, state: PoolState) -> bool:
        return self._send("pool_state", to, epoch, {"state": state.to_json()})

    def send_ask(self, to: str, epoch: int, ask_id: str, op: str, args: dict[str, Any]) -> bool:
        return self._send("pool_ask", to, epoch, {"id": ask_id, "op": op, "args": args})

    def send_answer(self, to: str, epoch: int, ask_id: str, answer: dict[str, Any]) -> bool:
        return self._send("pool_answer", to, epoch, {"id": ask_id, "answer": answer})

    def send_hello(self, to: str, epoch: int, boot: str, *, agent: bool) -> bool:
        return self._send("pool_hello", to, epoch, {"boot": boot, "agent": agent})

    def fits(self, message: AgentMessage) -> bool:
        """Whether a run of ``message`` fits the budget even with no history."""
        return len(json.dumps(message.to_json())) <= self.budget

    def send_release(self, to: str, epoch: int, topic: str, *, done: bool = False) -> bool:
        kind = "pool_released" if done else "pool_release"
        return self._send(kind, to, epoch, {"topic": topic})

    def send_run(
        self,
        run: TopicRun,
        recipient: bytes,
        message: AgentMessage,
        history: Sequence[Turn],
        *,
        pull: bool = False,
    ) -> bool:
        """``run`` to its machine, with the newest turns of ``history`` that fit;
        ``pull``: its machine pulls the agent's state before it runs it."""
        head = json.dumps(message.to_json())
        kept: list[list[Any]] = []
        size = len(head)
        for turn in reversed(history[-MAX_HISTORY:]):
            row = [turn.text, list(turn.replies)]
            size += len(json.dumps(row)) + 1
            if size > self.budget:
                break
            kept.append(row)
        kept.reverse()
        doc = {"message": message.to_json(), "history": kept, "pull": pull}
        return self._sealed("pool_run", run.machine_id, run, recipient, doc)

    def send_result(
        self,
        to: str,
        run: TopicRun,
        recipient: bytes,
        replies: Sequence[str] | None,
        error: str | None,
    ) -> bool:
        doc = {
            "replies": None if replies is None else list(replies),
            "error": None if error is None else error[:MAX_ERROR_CHARS],
        }
        return self._sealed("pool_result", to, run, recipient, doc)

    def _sealed(self, kind: str, to: str, run: TopicRun, recipient: bytes, doc: Any) -> bool:
        box = nacl.public.SealedBox(nacl.public.PublicKey(recipient))
        sealed = box.encrypt(json.dumps(doc, ensure_ascii=False).encode("utf-8"))
        body = {"run": _run_row(run), "box": base64.b64encode(sealed).decode()}
        return self._send(kind, to, run.term, body)

    def _send(self, kind: str, to: str, epoch: int, body: dict[str, Any]) -> bool:
        env = make_envelope(kind, self.me, to, body, new_message_id(self.rng), epoch=epoch)
        return self.send(env)


def open_state(env: Envelope) -> PoolState:
    state = PoolState.from_json(env.body["state"])
    if state.term > env.epoch:
        raise PoolRefused(f"a state of term {state.term} from the holder of epoch {env.epoch}")
    return state


def open_run(
    env: Envelope, key: nacl.public.PrivateKey
) -> tuple[TopicRun, AgentMessage, tuple[Turn, ...], bool]:
    """A ``pool_run`` for this machine (``env.to``), opened with its key: the run, its
    message, its history, whether to pull the agent's state first."""
    run = _open_row(env, machine=env.to)
    doc = _unseal(env, key, {"message", "history", "pull"})
    if not isinstance(doc["pull"], bool):
        raise PoolRefused("a run's pull: true or false")
    message = _message(doc["message"], run)
    history = doc["history"]
    if not isinstance(history, list) or len(history) > MAX_HISTORY:
        raise PoolRefused(f"a run's history: a list of at most {MAX_HISTORY} turns")
    turns = []
    for row in history:
        if not isinstance(row, list) or len(row) != 2 or not isinstance(row[0], str):
            raise PoolRefused("a run's history: turns are [text, [replies]]")
        turns.append(Turn(row[0], _texts(row[1], "a turn's replies")))
    return run, message, tuple(turns), doc["pull"]


def open_result(
    env: Envelope, key: nacl.public.PrivateKey
) -> tuple[TopicRun, tuple[str, ...] | None, str | None]:
    """A ``pool_result`` from the machine that ran it (``env.sender``)."""
    run = _open_row(env, machine=env.sender)
    doc = _unseal(env, key, {"replies", "error"})
    replies, error = doc["replies"], doc["error"]
    if error is not None and (not isinstance(error, str) or len(error) > MAX_ERROR_CHARS):
        raise PoolRefused(f"a result's error: a string of at most {MAX_ERROR_CHARS} characters")
    if (replies is None) == (error is None):
        raise PoolRefused("a result has either replies or an error")
    if replies is None:
        return run, None, error
    try:  # the agent's own contract, as a run here would be held to it
        return run, tuple(check_replies(replies)), None
    except AgentFailed as exc:
        raise PoolRefused(f"a result's replies: {exc.detail}") from None


def _run_row(run: TopicRun) -> list[Any]:
    return [run.topic, run.key, run.machine_id, run.term, run.epoch]


def _open_row(env: Envelope, *, machine: str) -> TopicRun:
    row = env.body["run"]
    if not isinstance(row, list) or len(row) != 5:
        raise PoolRefused("a run is [topic, key, machine_id, term, epoch]")
    for name in row[:3]:
        if not isinstance(name, str) or not name or len(name) > MAX_ID_CHARS:
            raise PoolRefused(f"a run's names: 1 to {MAX_ID_CHARS} characters")
    for count in row[3:]:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_EPOCH:
            raise PoolRefused("a run's term and epoch: integers in range")
    run = TopicRun(*row)
    if run.term != env.epoch or run.machine_id != machine:
        raise PoolRefused(f"a run of {run.machine_id} at term {run.term} in the wrong envelope")
    return run


def _unseal(env: Envelope, key: nacl.public.PrivateKey, fields: set[str]) -> dict[str, Any]:
    try:
        raw = nacl.public.SealedBox(key).decrypt(base64.b64decode(env.body["box"], validate=True))
        doc = safejson.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):  # UnicodeDecodeError and TooDeep are ValueErrors
        raise PoolRefused(f"{env.type}: the box is not JSON in base64") from None
    except nacl.exceptions.CryptoError:
        raise PoolRefused(f"{env.type}: the box does not open with this machine's key") from None
    if not isinstance(doc, dict) or set(doc) != fields:
        raise PoolRefused(f"{env.type}: expected exactly the fields {sorted(fields)}")
    return doc


def _message(doc: object, run: TopicRun) -> AgentMessage:
    fields = {"topic", "message_id", "text", "sender", "kind"}
    if not isinstance(doc, dict) or set(doc) != fields:
        raise PoolRefused(f"a run's message: expected exactly the fields {sorted(fields)}")
    mid = doc["message_id"]
    if isinstance(mid, bool) or not isinstance(mid, int) or not 0 <= mid <= MAX_EPOCH:
        raise PoolRefused("a run's message: message_id is not a count")
    if not all(isinstance(doc[f], str) for f in ("topic", "text", "sender", "kind")):
        raise PoolRefused("a run's message: topic, text, sender and kind are strings")
    if doc["kind"] not in MESSAGE_KINDS or doc["topic"] != run.topic:
        raise PoolRefused("a run's message: an unknown kind, or another topic's")
    return AgentMessage(doc["topic"], mid, doc["text"], doc["sender"], doc["kind"])


def _texts(value: object, what: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_REPLIES
        or not all(isinstance(t, str) for t in value)
    ):
        raise PoolRefused(f"{what}: a list of at most {MAX_REPLIES} strings")
    return tuple(value)
