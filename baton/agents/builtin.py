"""The agent kinds baton knows, the spec parser and the reply check.

Invariants:
- ``parse_spec`` accepts exactly the three forms of baton.agents.base (``echo``,
  ``cmd:PROGRAM [ARGS]``, ``python:module:function``) and refuses anything else with a
  ConfigError naming the knob ``agent``; it imports nothing and runs nothing.
- ``check_replies`` is the one place that decides what a usable answer is: it returns a
  fresh list of 1..MAX_REPLIES non-blank strings of at most MAX_REPLY_CHARS characters, or
  raises AgentFailed("garbage", what was wrong).
- Every agent built here either returns checked replies or raises AgentFailed with a reason
  of "error" (the user's code raised), "garbage" (it answered something unusable) or
  "crash" (the ``cmd`` program could not run or exited non-zero). These agents are meant to
  run inside a worker process (baton.agents.worker), never in the node itself.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Literal

from baton.agents.base import (
    MAX_REPLIES,
    MAX_REPLY_CHARS,
    STATE_ENV,
    Agent,
    AgentFailed,
    AgentMessage,
    Turn,
)
from baton.core import safejson
from baton.core.errors import ConfigError

SpecKind = Literal["echo", "cmd", "python"]

KNOB = "agent"
# A cmd program's stdout larger than this is garbage. Room for the largest valid replies
# even when every character is escaped as a surrogate pair (12 bytes).
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
STDERR_TAIL_BYTES = 2000
DETAIL_CHARS = 500


def short(text: str, limit: int = DETAIL_CHARS) -> str:
    """``text`` cut to ``limit`` characters (keeping its end, where errors usually are)."""
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def check_replies(value: object) -> list[str]:
    """The replies in ``value`` (a list of str, or one str), or AgentFailed("garbage")."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise AgentFailed("garbage", f"replies must be a list of strings, not {_kind(value)}")
    if not value:
        raise AgentFailed("garbage", "no replies")
    if len(value) > MAX_REPLIES:
        raise AgentFailed("garbage", f"{len(value)} replies; at most {MAX_REPLIES}")
    for i, reply in enumerate(value, 1):
        if not isinstance(reply, str):
            raise AgentFailed("garbage", f"reply {i} is {_kind(reply)}, not a string")
        if not reply.strip():
            raise AgentFailed("garbage", f"reply {i} is empty")
        if len(reply) > MAX_REPLY_CHARS:
            raise AgentFailed(
                "garbage", f"reply {i} has {len(reply)} characters; at most {MAX_REPLY_CHARS}"
            )
        try:
            reply.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud83d"): no channel can carry it
            raise AgentFailed("garbage", f"reply {i} is not valid Unicode") from None
    return list(value)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def parse_spec(spec: str) -> tuple[SpecKind, str]:
    """Split an agent spec into its kind and the rest, or raise ConfigError("agent").

    ``echo`` -> ("echo", ""); ``cmd:prog args`` -> ("cmd", "prog args") once ``prog``
    is found; ``python:pkg.mod:func`` -> ("python", "pkg.mod:func") once both names are
    valid identifiers (the module is not imported here).
    """
    spec = spec.strip()
    if spec == "echo":
        return "echo", ""
    kind, sep, rest = spec.partition(":")
    if sep and kind == "cmd":
        cmd_argv(rest)
        return "cmd", rest.strip()
    if sep and kind == "python":
        python_target(rest)
        return "python", rest.strip()
    raise ConfigError(
        KNOB,
        f"unknown agent spec {spec!r}; use 'echo', 'cmd:PROGRAM [ARGS]' "
        "or 'python:module:function'",
    )


def cmd_argv(rest: str) -> list[str]:
    """The argv of a ``cmd:`` spec, its program resolved, or ConfigError("agent")."""
    try:
        argv = shlex.split(rest)
    except ValueError as exc:
        raise ConfigError(KNOB, f"cannot split cmd:{rest}: {exc}") from None
    if not argv:
        raise ConfigError(KNOB, "cmd: names no program; use 'cmd:PROGRAM [ARGS]'")
    program = argv[0]
    if os.sep in program or (os.altsep and os.altsep in program):
        if not os.path.isfile(program):
            raise ConfigError(KNOB, f"cmd program {program!r} does not exist")
        if not os.access(program, os.X_OK):
            raise ConfigError(KNOB, f"cmd program {program!r} is not executable")
        return argv
    found = shutil.which(program)
    if found is None:
        raise ConfigError(KNOB, f"cmd program {program!r} is not found on PATH")
    return [found, *argv[1:]]


def python_target(rest: str) -> tuple[str, str]:
    """(module, function) of a ``python:`` spec, or ConfigError("agent")."""
    parts = rest.strip().split(":")
    if len(parts) != 2:
        raise ConfigError(KNOB, f"python:{rest} is not of the form python:module:function")
    module, function = parts
    if not module or not all(p.isidentifier() for p in module.split(".")):
        raise ConfigError(KNOB, f"python:{rest}: {module!r} is not a module name")
    if not function.isidentifier():
        raise ConfigError(KNOB, f"python:{rest}: {function!r} is not a function name")
    return module, function


ECHO_STATE_FILE = "echo-turns.log"


class EchoAgent:
    """Echoes the text and names the number of earlier turns (continuity made visible).
    A message that is not text is named by its kind: ``echo: [sticker] 👍 (earlier
    turns: 0)``, ``echo: [photo] (earlier turns: 0)`` for a photo without a caption.

    It keeps state too, as a real agent would: with a state directory (AGENT_STATE_DIR)
    it appends ``<topic> <message id>`` to ECHO_STATE_FILE there for every message it
    answers, so the demo can show that state following the awake role."""

    def __init__(self, state_dir: str | None = None) -> None:
        self.state_file = Path(state_dir) / ECHO_STATE_FILE if state_dir else None

    def handle(self, message: AgentMessage, history: Sequence[Turn]) -> list[str]:
        if self.state_file is not None:
            with contextlib.suppress(OSError):  # its state is kept as far as it can be
                fd = os.open(self.state_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as fh:
                    fh.write(f"{message.topic} {message.message_id}\n")
        said = message.text
        if message.kind != "text":
            said = f"[{message.kind}] {said}" if said else f"[{message.kind}]"
        return [f"echo: {said} (earlier turns: {len(history)})"]


class PythonAgent:
    """Calls ``function(message, history)``; its result is checked by check_replies."""

    def __init__(self, function: Callable[..., Any], name: str) -> None:
        self.function = function
        self.name = name

    def handle(self, message: AgentMessage, history: Sequence[Turn]) -> list[str]:
        try:
            value = self.function(message, list(history))
        except Exception as exc:  # the user's code: any exception is its error, counted
            raise AgentFailed("error", short(f"{type(exc).__name__}: {exc}")) from None
        return check_replies(value)


def load_python_agent(spec_rest: str) -> PythonAgent:
    """Import ``module:function`` and wrap it, or raise ConfigError("agent")."""
    module_name, function_name = python_target(spec_rest)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any failure to import is a configuration problem
        raise ConfigError(
            KNOB, f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    function = getattr(module, function_name, None)
    if function is None or not callable(function):
        raise ConfigError(KNOB, f"{module_name!r} has no function {function_name!r}")
    return PythonAgent(function, spec_rest.strip())


class CmdAgent:
    """Runs the program once per message: JSON in on stdin, ``{"replies": [...]}`` out.

    No timeout of its own: the runner kills the worker's whole process group (the program
    included) when a run takes too long. Output goes to temporary files, so a chatty
    program costs disk for the length of one run, not memory.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)

    def handle(self, message: AgentMessage, history: Sequence[Turn]) -> list[str]:
        request = {"message": message.to_json(), "history": [t.to_json() for t in history]}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.run(
                    self.argv, input=json.dumps(request).encode(), stdout=out, stderr=err
                )
            except OSError as exc:
                raise AgentFailed("crash", f"cannot run {self.argv[0]}: {exc}") from None
            if proc.returncode != 0:
                status = _status(proc.returncode)
                raise AgentFailed("crash", f"{status}; stderr: {_tail(err)}")
            return _replies_from_output(_head(out))


def _status(returncode: int) -> str:
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def _tail(stream: IO[bytes]) -> str:
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - STDERR_TAIL_BYTES))
    return short(stream.read().decode("utf-8", "replace"), STDERR_TAIL_BYTES) or "(empty)"


def _head(stream: IO[bytes]) -> bytes:
    stream.seek(0)
    data = stream.read(MAX_OUTPUT_BYTES + 1)
    if len(data) > MAX_OUTPUT_BYTES:
        raise AgentFailed("garbage", f"stdout is longer than {MAX_OUTPUT_BYTES} bytes")
    return data


def _replies_from_output(data: bytes) -> list[str]:
    try:
        answer = safejson.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise AgentFailed("garbage", f"stdout is not JSON: {short(repr(data[:200]))}") from None
    if not isinstance(answer, dict) or "replies" not in answer:
        raise AgentFailed("garbage", 'stdout is not a JSON object with "replies"')
    return check_replies(answer["replies"])


def load_agent(spec: str) -> Agent:
    """The agent a spec names, ready to handle messages, or ConfigError("agent")."""
    kind, rest = parse_spec(spec)
    if kind == "echo":
        return EchoAgent(os.environ.get(STATE_ENV))
    if kind == "cmd":
        return CmdAgent(cmd_argv(rest))
    return load_python_agent(rest)
