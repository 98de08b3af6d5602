"""The pool's part of real nodes (issue 20, first increments): with a lease store every
node runs a PoolActor, whose view status shows: the holder's role "holder", the others'
"mirror", the pool off until it is turned on; after a kill -9 of the holder the new
holder's pool says so. (Turning it on from the CLI and HTTP comes with `baton pool`.)"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from baton.demo.devmesh import Mesh
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]


def test_every_node_of_a_lease_mesh_runs_the_pool_and_status_shows_its_role(
    make_mesh: Callable[..., Mesh],
) -> None:
    mesh = make_mesh(2, names=["alpha", "bravo"], lease_ttl_ms=3000)

    def roles() -> dict[str, str] | None:
        views = {m.name: m.status() for m in mesh.machines}
        if any(v["pool"] is None for v in views.values()):
            return None
        found = {n: v["pool"]["role"] for n, v in views.items()}
        return found if sorted(found.values()) == ["holder", "mirror"] else None

    found = wait_for(roles, 60, "one pool holder and one mirror")
    holder = next(m for m in mesh.machines if found[m.name] == "holder")
    other = next(m for m in mesh.machines if m is not holder)
    view = holder.status()["pool"]
    assert view["enabled"] is False and view["pins"] == 0 and view["placements"] == 0
    holder.send_signal(signal.SIGKILL)
    wait_for(lambda: other.status()["pool"]["role"] == "holder", 60, "the new holder's pool")
