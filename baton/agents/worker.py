"""The agent worker process (``python -m baton.agents.worker SPEC``) and its protocol.

Protocol, JSON lines over the worker's stdin and stdout (both ends are encoded and
decoded here, so the runner and the worker cannot drift apart):

- worker -> runner, once: ``{"ready": true}``, or ``{"ready": false, "error": "..."}``
  followed by exit status 2 when the spec cannot be loaded.
- runner -> worker: ``{"id": n, "message": {...}, "history": [{"text", "replies"}...]}``,
  the message as AgentMessage.to_json(): ``{"topic", "message_id", "text", "sender",
  "kind"}`` (kind: baton.core.inbound.MESSAGE_KINDS; absent, from a runner older than
  kinds, e.g. while the installed code is replaced under a running node: "text").
- worker -> runner, one line per request: ``{"id": n, "replies": [...]}`` or
  ``{"id": n, "error": "...", "reason": "error|garbage|crash"}``.

Invariants:
- Nothing but protocol lines ever reaches the protocol's stdout: before the agent is
  loaded, the protocol streams move to private file descriptors, fd 1 and sys.stdout point
  at stderr and fd 0 and sys.stdin at /dev/null, so an agent's prints (Python or C) and
  reads cannot corrupt or consume the protocol.
- One request at a time, answered in order; the worker exits when its stdin closes.
- The worker sets no timeout: the runner kills its whole process group (a ``cmd``
  program included) when a run takes too long.
- The worker does not outlive the process that started it: when that process dies, the
  worker kills its own process group (if it leads one) and exits.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from baton.agents.base import AgentFailed, AgentMessage, Turn
from baton.agents.builtin import check_replies, load_agent, short
from baton.core import safejson
from baton.core.errors import ConfigError
from baton.core.inbound import MESSAGE_KINDS

# The longest answer line the runner reads; a longer one is garbage. Valid replies
# (MAX_REPLIES x MAX_REPLY_CHARS, sent as UTF-8, at most 6 bytes a character when escaped)
# always fit.
MAX_LINE_BYTES = 1024 * 1024
REASONS = frozenset({"error", "garbage", "crash"})


class BrokenAnswer(AgentFailed):
    """The worker's answer breaks the protocol (not JSON, wrong id, wrong shape)."""

    def __init__(self, detail: str) -> None:
        super().__init__("garbage", detail)


# --- the runner's end ---------------------------------------------------------------


def encode_request(request_id: int, message: AgentMessage, history: Sequence[Turn]) -> bytes:
    body = {
        "id": request_id,
        "message": message.to_json(),
        "history": [turn.to_json() for turn in history],
    }
    return json.dumps(body).encode() + b"\n"


def decode_ready(line: bytes) -> str | None:
    """None if ``line`` says the worker is ready, else why it is not."""
    try:
        body = safejson.loads(line)
    except ValueError:
        return f"the worker did not start: {short(repr(line[:200]))}"
    if isinstance(body, dict) and body.get("ready") is True:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return f"the worker did not start: {short(repr(line[:200]))}"


def decode_answer(line: bytes, request_id: int) -> list[str]:
    """The replies in an answer line, AgentFailed for the agent's failure, or BrokenAnswer."""
    try:
        body = safejson.loads(line)
    except ValueError:
        raise BrokenAnswer(f"answer is not JSON: {short(repr(line[:200]))}") from None
    if not isinstance(body, dict):
        raise BrokenAnswer("answer is not a JSON object")
    if body.get("id") != request_id:
        raise BrokenAnswer(f"answer for id {body.get('id')!r}, expected {request_id}")
    if "replies" in body:
        return check_replies(body["replies"])
    reason, error = body.get("reason"), body.get("error")
    if reason not in REASONS or not isinstance(error, str):
        raise BrokenAnswer("answer has neither replies nor a known error")
    raise AgentFailed(str(reason), error)


# --- the worker's end ---------------------------------------------------------------


def decode_request(line: bytes) -> tuple[int, AgentMessage, list[Turn]]:
    """The parts of a request line; ValueError (or KeyError, TypeError) if malformed."""
    body = safejson.loads(line)
    request_id = body["id"]
    if not isinstance(request_id, int):
        raise ValueError("id is not an integer")
    m = body["message"]
    if not isinstance(m, dict):
        raise TypeError("message is not an object")
    kind = m.get("kind", "text")
    if kind not in MESSAGE_KINDS:
        raise ValueError(f"unknown message kind {kind!r}")
    message = AgentMessage(
        topic=str(m["topic"]),
        message_id=int(m["message_id"]),
        text=str(m["text"]),
        sender=str(m["sender"]),
        kind=str(kind),
    )
    history = [Turn(str(t["text"]), tuple(str(r) for r in t["replies"])) for t in body["history"]]
    return request_id, message, history


def answer(handle: Any, line: bytes) -> dict[str, Any]:
    """The answer to one request line, given the agent's ``handle``."""
    try:
        request_id, message, history = decode_request(line)
    except (ValueError, KeyError, TypeError) as exc:
        return {"id": None, "error": f"bad request: {exc}", "reason": "error"}
    try:
        replies = check_replies(handle(message, history))
    except AgentFailed as exc:
        reason = exc.reason if exc.reason in REASONS else "error"
        return {
            "id": request_id,
            "error": str(exc).removeprefix(f"{exc.reason}: "),
            "reason": reason,
        }
    except Exception as exc:  # the agent's own bug: an error, and the worker goes on
        return {"id": request_id, "error": short(f"{type(exc).__name__}: {exc}"), "reason": "error"}
    return {"id": request_id, "replies": replies}


def _private_stdio() -> tuple[IO[bytes], IO[bytes]]:
    """Move the protocol streams aside; point fd 0 at /dev/null and fd 1 at stderr."""
    sys.stdout.flush()
    proto_in = os.dup(0)  # os.dup makes non-inheritable descriptors: no child gets them
    proto_out = os.dup(1)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    return os.fdopen(proto_in, "rb"), os.fdopen(proto_out, "wb")


def _send(out: IO[bytes], body: dict[str, Any]) -> None:
    # UTF-8 rather than \uXXXX escapes: the largest valid answer stays below MAX_LINE_BYTES
    out.write(json.dumps(body, ensure_ascii=False).encode() + b"\n")
    out.flush()


def _end_with_parent() -> None:
    """End this worker's process group when the process that started it dies.

    A hung agent never reads the end of its stdin, so without this a worker (and its
    ``cmd`` program) would outlive a node that was killed with SIGKILL.
    """
    parent = os.getppid()
    try:
        pidfd = os.pidfd_open(parent)
    except OSError:
        return  # no pidfd here: the closing stdin is the only signal left
    if os.getppid() != parent:  # died before the pidfd named it
        os.close(pidfd)
        _end_group()

    def watch() -> None:
        select.select([pidfd], [], [])
        _end_group()

    threading.Thread(target=watch, name="baton-agent-parent", daemon=True).start()


def _end_group() -> None:
    if os.getpgid(0) == os.getpid():  # only a group of our own (the runner makes one)
        os.killpg(0, signal.SIGKILL)
    os._exit(1)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m baton.agents.worker SPEC", file=sys.stderr)
        return 2
    _end_with_parent()
    proto_in, proto_out = _private_stdio()
    try:
        agent = load_agent(args[0])
    except ConfigError as exc:
        _send(proto_out, {"ready": False, "error": str(exc).removeprefix(f"{exc.knob}: ")})
        return 2
    except Exception as exc:  # a spec that cannot load is reported, not a traceback
        _send(proto_out, {"ready": False, "error": short(f"{type(exc).__name__}: {exc}")})
        return 2
    try:
        _send(proto_out, {"ready": True})
        for line in iter(proto_in.readline, b""):
            _send(proto_out, answer(agent.handle, line))
    except BrokenPipeError:  # the runner is gone: nobody to answer
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
