"""Settings for every test: hypothesis examples have no deadline (a test must pass on a
loaded 2-core machine; speed is measured by tools/bench, never asserted here).

The order tests start in: the longest first. xdist hands tests out one at a time
(``--maxschedchunk=1`` in pyproject.toml), so a worker that is free takes the next
one; started longest first, the system tests overlap each other and the thousands of
short tests fill in around them, instead of a chunk of long ones ending the run on one
worker while the others idle."""

from __future__ import annotations

import pytest
from hypothesis import settings

settings.register_profile("baton", deadline=None)
settings.load_profile("baton")

# the system test files that take longest on a loaded 2-core host, longest first
LONGEST = (
    "test_chaos.py",
    "test_demo.py",
    "test_faults_netns.py",
    "test_handoff.py",
    "test_live_tail.py",
    "test_delivery.py",
    "test_head_of_line.py",
    "test_lease_faults.py",
    "test_faults.py",
    "test_lease.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # every test of tests/system is a system test, marked or not
        if item.path.parent.name == "system":
            item.add_marker(pytest.mark.system)

    def rank(item: pytest.Item) -> int:
        path = item.path
        if path.parent.name != "system":
            return len(LONGEST) + 1  # the short tests last
        return LONGEST.index(path.name) if path.name in LONGEST else len(LONGEST)

    items.sort(key=rank)  # stable: each file keeps its own order
