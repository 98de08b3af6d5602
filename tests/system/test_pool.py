"""The pool's part of real nodes (issue 20, first increments): with a lease store every
node runs a PoolActor, whose view status shows: the holder's role "holder", the others'
"mirror", the pool off until it is turned on; `baton pool enable` turns it on on the
awake machine alone, GET /pool answers 503 until then, and every member mirrors it;
after a kill -9 of the holder the new holder's pool says so, still on."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from baton.demo.devmesh import Machine, Mesh
from baton.node.client import NodeClient
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
    assert pool_route(holder) == (503, "pool_disabled")
    assert holder.json("pool", "status") == {**view}
    refused = other.baton("pool", "enable", "--json", check=False)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"] == "not_holder"
    assert other.status()["pool"]["enabled"] is False
    on = holder.json("pool", "enable")
    assert on["enabled"] is True and on["role"] == "holder"
    assert pool_route(holder)[0] == 200
    wait_for(lambda: other.status()["pool"]["enabled"], 30, "the mirror to take it")
    holder.send_signal(signal.SIGKILL)
    wait_for(lambda: other.status()["pool"]["role"] == "holder", 60, "the new holder's pool")
    assert other.json("pool", "status")["enabled"] is True
    off = other.json("pool", "disable")
    assert off["enabled"] is False and off["term"] > on["term"]


def pool_route(m: Machine) -> tuple[int, str | None]:
    """GET /pool on ``m``: the HTTP status and the error code."""
    client = NodeClient(m.home)
    request = urllib.request.Request(
        client.info["http"] + "/pool", headers={"Authorization": f"Bearer {client.token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["error"]
