"""Loaded (through PYTHONPATH) only by the processes that the wall-clock test starts under
libfaketime. libfaketime 0.9.10 (Debian's) turns clock_nanosleep(CLOCK_MONOTONIC,
TIMER_ABSTIME) into EINVAL when monotonic clocks are left alone (its issue #426), and
that is exactly how Python 3.11's time.sleep sleeps (subprocess's waits too). Sleep on a
condition variable instead: libfaketime leaves those alone, and the node's clocks stay
what they are. Nothing in baton itself changes for the test.

libfaketime 0.9.10 also names its shared memory in the environment (FAKETIME_SHARED,
set by the first process under it and unlinked when that process ends; it has no
switch to turn it off). A child that inherits the name of a process gone by then (a
launcher, a killed node) exits with "sem_open failed" before it runs: the lease store's
git commands failed so in chaos runs, failures no fault asked for. Each process here
forgets the name, so the processes it starts make their own."""

import os
import threading
import time

os.environ.pop("FAKETIME_SHARED", None)

_never = threading.Event()


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    _never.wait(seconds)


time.sleep = _sleep
