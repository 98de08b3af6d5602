"""Loaded (through PYTHONPATH) only by the processes that the wall-clock test starts under
libfaketime. libfaketime 0.9.10 (Debian's) turns clock_nanosleep(CLOCK_MONOTONIC,
TIMER_ABSTIME) into EINVAL when monotonic clocks are left alone (its issue #426), and
that is exactly how Python 3.11's time.sleep sleeps (subprocess's waits too). Sleep on a
condition variable instead: libfaketime leaves those alone, and the node's clocks stay
what they are. Nothing in baton itself changes for the test."""

import threading
import time

_never = threading.Event()


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    _never.wait(seconds)


time.sleep = _sleep
