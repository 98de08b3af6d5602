"""The pool's questions (docs/DESIGN.md, "The pool"): what the HTTP routes and `baton
pool ...` ask, answered by the holder, whose router is the authority; any other machine
proxies them to it over the wire.

A question is an op and its arguments (``check``, strict: a peer's bytes):
- ``pool`` {}: the pool, its machines (load, health), the holder, and where each
  topic runs (the first MAX_LISTED, by name);
- ``machine`` {"machine": id or nickname}: one machine;
- ``placement`` {"topic": str}: where the topic runs and why;
- ``transfer`` {"topic", "to", "confirm"}: a move (the one planner);
- ``unpin`` {"topic"}: the topic is placed by load again;
- ``verify`` {}: the pool's end-to-end check begins (baton.actors.pool_probe);
- ``e2e`` {}: its results so far.

An answer is ``{"ok": ...}`` or ``{"error": code, "detail": str}``; ``raise_for``
turns an error back into its typed error where the answer is used. A standby's
question waits for the holder's ``pool_answer`` at most ASK_TIMEOUT_MS
(``unavailable`` after that), and at most MAX_ASKED wait at once.

``pool_ask`` {"id", "op", "args"} goes to the machine this one's lease view says holds;
``pool_answer`` {"id", "answer"} comes back. The holder answers a member only; a
transfer asked by a peer is ``by`` that machine.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from baton.actors.pool_routing import PoolRouting
from baton.core import errors as e
from baton.core.pool_state import MAX_ID_CHARS
from baton.core.pool_transfer import TransferPlan, TransferRequest
from baton.wire.envelope import MESSAGE_ID_RE, Envelope, new_message_id
from baton.wire.pool_transport import PoolTransport

ASK_TIMEOUT_MS = 5000
MAX_ASKED = 64
MAX_LISTED = 1000  # topics GET /pool lists (topics_total says how many there are)

ARGS: dict[str, dict[str, type]] = {
    "pool": {},
    "machine": {"machine": str},
    "placement": {"topic": str},
    "transfer": {"topic": str, "to": str, "confirm": bool},
    "unpin": {"topic": str},
    "verify": {},
    "e2e": {},
}


@dataclass(frozen=True)
class Query:
    """A question for the pool; ``reply`` gets the answer (on the actor's thread)."""

    op: str
    args: dict[str, Any]
    reply: Callable[[dict[str, Any]], None]


def check(op: object, args: object) -> tuple[str, dict[str, Any]]:
    """The question, if it is one (BadRequest otherwise)."""
    if not isinstance(op, str) or op not in ARGS:
        raise e.BadRequest(f"a pool question is one of {sorted(ARGS)}")
    want = ARGS[op]
    if not isinstance(args, dict) or set(args) != set(want):
        raise e.BadRequest(f"{op}: expected exactly {sorted(want)}")
    for name, kind in want.items():
        value = args[name]
        if not isinstance(value, kind):
            raise e.BadRequest(f"{op}: {name} is a {kind.__name__}")
        if isinstance(value, str) and not 0 < len(value) <= MAX_ID_CHARS:
            raise e.BadRequest(f"{op}: {name} is 1 to {MAX_ID_CHARS} characters")
    return op, dict(args)


def failed(exc: e.BatonError) -> dict[str, Any]:
    return {"error": exc.code, "detail": exc.detail}


def answer(
    op: str,
    args: dict[str, Any],
    routing: PoolRouting,
    *,
    view: dict[str, Any],
    by: str,
    now: float,
    wall_s: float,
) -> dict[str, Any]:
    """The holder's answer to a checked question."""
    match op:
        case "pool":
            placed = sorted(set(routing.router.placements) | set(routing.router.pins))
            topics = [routing.describe(t, now).to_json() for t in placed[:MAX_LISTED]]
            return {
                "ok": {
                    **view,
                    "holder": routing.me,
                    "machines": machines(routing, now),
                    "topics": topics,
                    "topics_total": len(placed),
                }
            }
        case "machine":
            found = [
                m
                for m in machines(routing, now)
                if args["machine"] in (m["machine_id"], m["nickname"])
            ]
            if not found:
                return {
                    "error": "unknown_machine",
                    "detail": f"no member is named {args['machine']!r}",
                }
            return {"ok": found[0]}
        case "placement":
            return {"ok": routing.describe(args["topic"], now).to_json()}
        case "transfer":
            request = TransferRequest(args["topic"], args["to"], by, args["confirm"])
            plan = routing.transfer(request, now, wall_s)
            return {"ok": plan.to_json()} if isinstance(plan, TransferPlan) else plan.to_json()
        case _:  # "unpin"
            return {"ok": {"topic": args["topic"], "unpinned": routing.unpin(args["topic"], now)}}


def machines(routing: PoolRouting, now: float) -> list[dict[str, Any]]:
    """Each machine of the pool: its load (topics placed), whether alive, when last
    heard (ms ago, on the holder's clock), its topics running now."""
    ttl = routing.router.ttl_ms
    running: dict[str, int] = {}
    for run in routing.router.running.values():
        running[run.machine_id] = running.get(run.machine_id, 0) + 1
    return [
        {
            "machine_id": i,
            "nickname": m.nickname,
            "load": m.load,
            "running": running.get(i, 0),
            "alive": m.alive(now, ttl),
            "heard_ms_ago": None if m.last_heard_ms is None else round(now - m.last_heard_ms),
            "holder": i == routing.me,
        }
        for i, m in sorted(routing.machines().items())
    ]


_KINDS: dict[str, type[e.BatonError]] = {
    "unknown_machine": e.PoolUnknown,
    "unknown_topic": e.PoolUnknown,
    "already_there": e.PoolMoveConflict,
    "needs_confirm": e.PoolMoveConflict,
    "rate_limited": e.PoolMoveLimited,
    "pool_disabled": e.PoolDisabled,
    "not_holder": e.PoolNotHolder,
    "bad_request": e.BadRequest,
}


def answer_peer(
    env: Envelope,
    members: Container[str],
    answer: Callable[[str, dict[str, Any], str], dict[str, Any]],
    transport: PoolTransport,
    count: Callable[[str], None],
) -> None:
    """A peer's ``pool_ask``: checked, answered by ``answer`` (op, args, by), sent back;
    a stranger's is dropped."""
    ask_id = env.body["id"]
    if env.sender not in members or not MESSAGE_ID_RE.fullmatch(ask_id):
        count("pool.refused.ask")
        return
    try:
        op, args = check(env.body["op"], env.body["args"])
        said = answer(op, args, env.sender)
    except e.BadRequest as exc:
        count("pool.refused.ask")
        said = failed(exc)
    try:
        transport.send_answer(env.sender, env.epoch, ask_id, said)
    except ValueError:  # past the frame limit: say so instead
        count("pool.too_big")
        too_big = e.Unavailable("the answer is too big for the wire (max_frame_bytes)")
        transport.send_answer(env.sender, env.epoch, ask_id, failed(too_big))


def raise_for(answer: object) -> Any:
    """The answer's value, or its error raised as the typed error of its code."""
    if isinstance(answer, dict) and set(answer) == {"ok"}:
        return answer["ok"]
    if isinstance(answer, dict) and set(answer) == {"error", "detail"}:
        code, detail = answer["error"], answer["detail"]
        kind = _KINDS.get(code, e.Unavailable) if isinstance(code, str) else e.Unavailable
        exc = kind(str(detail)[:500])
        if isinstance(code, str) and code in _KINDS:
            exc.code = code  # the planner's own word, not the class's
        raise exc
    raise e.Unavailable("the holder's answer is malformed")


class Asked:
    """A standby's questions waiting for the holder's answers."""

    def __init__(self, transport: PoolTransport) -> None:
        self.transport = transport
        self.waiting: dict[str, tuple[Query, float]] = {}  # id -> (question, deadline)

    def ask(self, query: Query, holder: str, epoch: int, now: float) -> None:
        """Ask ``holder`` (of ``epoch``); the answer, or why none, goes to the query."""
        if len(self.waiting) >= MAX_ASKED:
            query.reply(failed(e.Unavailable("too many questions wait for the holder")))
            return
        ask_id = new_message_id(self.transport.rng)
        self.waiting[ask_id] = (query, now + ASK_TIMEOUT_MS)
        if not self.transport.send_ask(holder, epoch, ask_id, query.op, query.args):
            unreachable = e.Unavailable(f"the holder {holder} is not reachable")
            self.answered(ask_id, failed(unreachable))

    def received(self, env: Envelope, holder: str | None, count: Callable[[str], None]) -> None:
        """A ``pool_answer``: taken only from the holder, for a question that waits."""
        if env.sender != holder or not self.answered(env.body["id"], env.body["answer"]):
            count("pool.refused.answer")

    def answered(self, ask_id: object, answer: object) -> bool:
        found = self.waiting.pop(ask_id, None) if isinstance(ask_id, str) else None
        if found is None:
            return False
        found[0].reply(answer if isinstance(answer, dict) else {"error": "unavailable",
                                                                "detail": "malformed"})  # fmt: skip
        return True

    def expire(self, now: float) -> None:
        for ask_id, (query, deadline) in list(self.waiting.items()):
            if now >= deadline:
                del self.waiting[ask_id]
                query.reply(failed(e.Unavailable("the holder did not answer in time")))

    def clear(self, why: str) -> None:
        for query, _ in self.waiting.values():
            query.reply(failed(e.Unavailable(why)))
        self.waiting.clear()
