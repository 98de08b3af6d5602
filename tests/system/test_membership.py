"""Removing and leaving: revocation reaches every member and sticks."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable

import pytest

from baton.demo.devmesh import Machine, Mesh, free_port
from baton.node.client import NodeClient, http_json
from baton.pairing.membership import sign_leave
from baton.stores.identity_store import load_identity
from baton.stores.registry_store import JsonRegistryStore
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]

NAMES = ["alpha", "bravo", "charlie"]


@pytest.fixture
def paired(make_mesh: Callable[..., Mesh]) -> dict[str, Machine]:
    """alpha awake, bravo and charlie paired to it with codes, all running and in touch."""
    host = make_mesh(1, link=False, names=["alpha"])[0]
    joiners = make_mesh(2, up=False, names=["bravo", "charlie"]).machines
    for m in joiners:
        session = host.json("pair")
        m.json("join", session["url"], "--code", session["code"], "--yes")
        m.up()
    machines = {"alpha": host, "bravo": joiners[0], "charlie": joiners[1]}
    for m in machines.values():
        wait_for(lambda m=m: _all_reachable(m), 60, f"{m.name} to reach the others")
    return machines


def _all_reachable(m: Machine) -> bool:
    peers = m.status()["peers"]
    return len(peers) == 2 and all(p["reachable"] for p in peers)


def _row(m: Machine, name: str) -> dict:
    return next(r for r in m.json("machines") if r["nickname"] == name)


def _revoked_on(m: Machine, name: str) -> bool:
    rows = NodeClient(m.home).get("/api/machines")
    return any(r["nickname"] == name and r["status"] == "revoked" for r in rows)


def _denied(m: Machine) -> int:
    return int(m.status()["counters"].get("wire.auth_denied", 0))


def test_a_removed_machine_is_shut_out_everywhere_and_stays_out(
    paired: dict[str, Machine],
) -> None:
    alpha, bravo, charlie = (paired[n] for n in NAMES)
    before = {m.name: _denied(m) for m in (alpha, bravo)}
    row = alpha.json("machines", "remove", "charlie", "--reason", "lost laptop")
    removed = time.monotonic()
    assert row["status"] == "revoked" and row["revoked_reason"] == "lost laptop"
    # Within a second neither alpha nor bravo lets charlie in: alpha's allow-list dropped
    # it before the command returned; bravo's drops it when alpha's roster lands.
    # (Asked over HTTP, not the CLI, so the clock measures the mesh, not Python startup.)
    assert _revoked_on(alpha, "charlie")
    left = 1.0 - (time.monotonic() - removed)
    wait_for(lambda: _revoked_on(bravo, "charlie"), left, "bravo to refuse charlie within 1 s")
    assert row["revoked_at"] >= row["paired_at"] > 0
    bravo_row = _row(alpha, "bravo")
    assert bravo_row["status"] == "active" and bravo_row["last_seen"] is not None
    for m in (alpha, bravo):
        wait_for(
            lambda m=m: _row(m, "charlie")["status"] == "revoked",
            30,
            f"{m.name} to record the revocation",
        )
        wait_for(lambda m=m: _denied(m) > before[m.name], 30, f"{m.name} to refuse charlie")
        assert "charlie" not in {p["nickname"] for p in m.status()["peers"]}
    wait_for(
        lambda: not any(p["reachable"] for p in charlie.status()["peers"]),
        30,
        "charlie to hear from nobody",
    )
    # Neither alpha's periodic roster nor charlie's own traffic brings charlie back.
    sent = alpha.status()["counters"].get("registry.roster_sent", 0)
    wait_for(
        lambda: alpha.status()["counters"].get("registry.roster_sent", 0) > sent,
        30,
        "alpha's next periodic roster",
    )
    wait_for(lambda: bravo.status()["counters"].get("wire.received", 0) > 0, 5, "bravo alive")
    assert _row(bravo, "charlie")["status"] == "revoked"
    assert _row(alpha, "charlie")["status"] == "revoked"
    assert _all_reachable_pair(alpha, bravo)


def test_only_a_fresh_pairing_brings_a_removed_machine_back(paired: dict[str, Machine]) -> None:
    alpha, bravo, charlie = (paired[n] for n in NAMES)
    alpha.json("machines", "remove", "charlie")
    wait_for(lambda: _row(bravo, "charlie")["status"] == "revoked", 30, "bravo to record it")
    charlie.json("down")
    url = alpha.card()["http"]
    stale = json.loads(alpha.paths.pairing_session.read_text())["session"]["code"]
    proc = charlie.baton("join", url, "--code", stale, "--json", "--yes", check=False)
    assert proc.returncode == 11 and json.loads(proc.stdout)["error"] == "pairing_refused"
    assert _row(alpha, "charlie")["status"] == "revoked"
    fresh = alpha.json("pair")
    charlie.json("join", fresh["url"], "--code", fresh["code"], "--yes")
    charlie.up()
    for m in (alpha, bravo):
        wait_for(
            lambda m=m: _row(m, "charlie")["status"] == "active",
            30,
            f"{m.name} to re-admit charlie",
        )
    for m in (alpha, bravo, charlie):
        wait_for(lambda m=m: _all_reachable(m), 60, f"{m.name} to reach everyone again")


def _all_reachable_pair(a: Machine, b: Machine) -> bool:
    return any(p["nickname"] == b.name and p["reachable"] for p in a.status()["peers"])


def test_a_standby_that_leaves_is_revoked_everywhere_and_loses_its_keys(
    paired: dict[str, Machine],
) -> None:
    alpha, bravo, charlie = (paired[n] for n in NAMES)
    result = bravo.json("leave")
    assert result["ok"] is True and result["node_stopped"] is True
    assert _row(alpha, "bravo")["status"] == "revoked", "recorded before leave returned"
    wait_for(lambda: _row(charlie, "bravo")["status"] == "revoked", 30, "charlie to learn")
    assert _row(alpha, "bravo")["revoked_reason"] == "left the mesh"
    for path in (bravo.paths.signing_key, bravo.paths.encryption_key, bravo.paths.api_token):
        assert not path.exists()
    assert not bravo.survivors(), "bravo's node was stopped"


def test_the_awake_machine_refuses_to_leave(paired: dict[str, Machine]) -> None:
    proc = paired["alpha"].baton("leave", "--json", check=False)
    err = json.loads(proc.stdout)
    assert proc.returncode == 1 and err["error"] == "bad_request" and "hand" in err["detail"]
    assert paired["alpha"].paths.signing_key.exists()


def test_leave_can_be_retried_to_the_end_and_frees_the_nickname(
    paired: dict[str, Machine],
) -> None:
    alpha, bravo, charlie = (paired[n] for n in NAMES)
    # bravo's first leave reached alpha, but the answer was lost on the way back
    me = JsonRegistryStore(bravo.paths.registry).load().me  # type: ignore[union-attr]
    first = sign_leave(
        load_identity(bravo.home).signing_key,
        me.machine_id,
        alpha.card()["machine_id"],
        me.added_at,
    )
    http_json(alpha.card()["http"] + "/api/leave", "POST", first)
    assert _row(alpha, "bravo")["status"] == "revoked"
    assert bravo.paths.signing_key.exists()
    retried = bravo.json("leave")
    assert retried["ok"] is True and not bravo.paths.signing_key.exists()
    # charlie was removed before it could leave: its leave still runs to the end
    alpha.json("machines", "remove", "charlie", "--reason", "lost laptop")
    result = charlie.json("leave")
    assert result["ok"] is True and not charlie.paths.signing_key.exists()
    assert _row(alpha, "charlie")["revoked_reason"] == "lost laptop"
    # a new machine may now take the name bravo
    shutil.rmtree(bravo.home)
    session = alpha.json("pair")
    ports = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    bravo.json(
        "join", session["url"], "--code", session["code"], "--name", "bravo",
        "--http", ports[0], "--wire", ports[1], "--yes",
    )  # fmt: skip
    rows = [r for r in alpha.json("machines") if r["nickname"] == "bravo"]
    assert sorted(r["status"] for r in rows) == ["active", "revoked"]
    assert len({r["machine_id"] for r in rows}) == 2
