"""Python agents the agent tests run in real worker processes (``python:tests.agents...``).

Each is a plain ``function(message, history)``. ``moody`` picks its behaviour from the
message text, so one worker can misbehave once and then be seen to answer again.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from baton.agents.base import MAX_REPLIES, MAX_REPLY_CHARS, AgentMessage, Turn


def ok(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    return [f"ok: {message.text}", f"turns: {len(history)}"]


def kinds(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    return [f"{message.kind}: {message.text}"]


def single(message: AgentMessage, history: Sequence[Turn]) -> str:
    return f"single: {message.text}"


def largest(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    """The largest valid answer, in characters that JSON escapes as surrogate pairs."""
    return ["\U0001f600" * MAX_REPLY_CHARS] * MAX_REPLIES


def raises(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    raise ValueError(f"boom on {message.text}")


def garbage(message: AgentMessage, history: Sequence[Turn]) -> object:
    return 42


def prints(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    print("noise from print")
    sys.stdout.flush()
    os.write(1, b"noise written to fd 1\n")
    return [f"fine: {message.text}"]


def exits(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    os._exit(3)


def sleeps(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    threading.Event().wait()
    return ["never"]


def _protocol_fd() -> int:
    """The worker's private protocol stdout: the write-only pipe that is not stderr."""
    stderr_pipe = os.readlink("/proc/self/fd/2")
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            flags = Path(f"/proc/self/fdinfo/{fd}").read_text().split("flags:")[1].split()[0]
        except OSError:
            continue
        writes = int(flags, 8) & os.O_ACCMODE == os.O_WRONLY
        if fd > 2 and target.startswith("pipe:") and target != stderr_pipe and writes:
            return fd
    raise RuntimeError("no protocol fd found")


def moody(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    """By text: pid, sleep, exit, raise, scribble (non-JSON line on the protocol), flood."""
    if message.text == "pid":
        return [str(os.getpid())]
    if message.text == "sleep":
        return sleeps(message, history)
    if message.text == "exit":
        return exits(message, history)
    if message.text == "raise":
        return raises(message, history)
    if message.text == "scribble":
        os.write(_protocol_fd(), b"this is not json\n")
    if message.text == "flood":
        fd = _protocol_fd()
        for _ in range(64):  # 2 MiB without a newline; the runner stops reading at 1 MiB
            os.write(fd, b"x" * 32768)
    return ok(message, history)


def env(message: AgentMessage, history: Sequence[Turn]) -> list[str]:
    """The value of the environment variable the message names (``-`` if unset); with
    ``NAME after PATH``, once PATH exists (at most 30 s)."""
    name, _, path = message.text.partition(" after ")
    deadline = time.monotonic() + 30
    while path and not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return [os.environ.get(name, "-")]
