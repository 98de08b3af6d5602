"""Repeated log lines are limited; the descriptor limit is raised toward its target."""

from __future__ import annotations

import logging
import resource
import subprocess
import sys

from baton.adapters.logs import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, name: str = "baton.http") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_one_message_passes_a_burst_per_window_then_says_how_many_were_left_out() -> None:
    clock = Clock()
    f = RepeatFilter(burst=3, window_s=10, clock=clock)
    passed = [f.filter(record("refused %s", i)) for i in range(20_000)]
    assert passed[:3] == [True] * 3 and not any(passed[3:])
    clock.now += 10
    first = record("refused %s", "x")
    assert f.filter(first) and first.getMessage() == "refused x [19997 more like this left out]"
    assert f.filter(record("refused %s", "y"))
    plain = record("refused %s", "z")
    f.filter(plain)
    assert plain.getMessage() == "refused z"  # nothing was left out in this window yet


def test_messages_loggers_and_levels_are_limited_apart() -> None:
    f = RepeatFilter(burst=1, window_s=10, clock=Clock())
    assert f.filter(record("a")) and not f.filter(record("a"))
    assert f.filter(record("b")) and f.filter(record("a", name="baton.wire"))
    warning = record("a")
    warning.levelno = logging.WARNING
    assert f.filter(warning)


def test_structured_events_always_pass_and_kinds_are_limited_apart() -> None:
    """Review of issue 16: ambiguous sends (structured events a checker counts) shared one
    budget with every other "%s" line, and a flood of 401s hid a wrong_code refusal."""
    f = RepeatFilter(burst=1, window_s=10, clock=Clock())
    for _ in range(30):
        event = record("%s", "ambiguous send")
        event.event = {"kind": "ambiguous_send"}
        assert f.filter(event)
    flood = [record("refused %s", "x") for _ in range(5)]
    for r in flood:
        r.limit_key = "unauthorized"
    assert [f.filter(r) for r in flood] == [True, False, False, False, False]
    wrong = record("refused %s", "x")
    wrong.limit_key = "wrong_code"
    assert f.filter(wrong)
    assert f.filter(record("%s", "one thing")) and f.filter(record("%s", "another thing"))


def test_a_record_is_decided_once_however_many_handlers_see_it() -> None:
    f = RepeatFilter(burst=1, window_s=10, clock=Clock())
    r = record("a")
    assert f.filter(r) and f.filter(r) and f.filter(r)  # three handlers, one record
    second = record("a")
    assert not f.filter(second) and not f.filter(second)


def test_a_flood_of_distinct_lines_does_not_grow_the_memory_without_bound() -> None:
    f = RepeatFilter(burst=1, window_s=10, clock=Clock())
    for i in range(10_000):
        assert f.filter(record(f"line {i}"))
    assert len(f._windows) <= 2000


def test_the_descriptor_limit_is_raised_toward_the_target_never_past_the_hard_one() -> None:
    """In a child, so this process keeps its own limit."""
    code = (
        "import resource; from baton.adapters.limits import raise_fd_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "got = raise_fd_limit(4096)\n"
        "assert got == resource.getrlimit(resource.RLIMIT_NOFILE)[0], got\n"
        "print(got, hard)\n"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    got, hard = (int(x) for x in out.stdout.split())
    expected = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    assert got == expected and got > 256
