"""Real machines on a network (issue 17), as root: each machine in its own network
namespace with its own address on a bridge, on default settings plus the one documented
flag, ``--listen 0.0.0.0``. They pair, answer a steady load at a sink that forgives
nothing (the chat service in Telegram mode, on the bridge's gateway), keep answering
while the holder's address and then a standby's are renumbered (reachable again within
seconds: measured and printed), hand the role over and fail over on their new
addresses. A machine with two addresses whose first path is cut is reached on the
second, and one restarted on another wire port is reached there. Needs root, ip and
iptables: CI runs as root, so these run there."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import SYNC_POLL_S, Mesh
from tests.system.chat_kit import (
    answered,
    check_exactly_once,
    dump,
    failed_over,
    holder,
    loading,
    post,
    reported_ambiguous,
)
from tests.system.netlab_kit import placed_mesh
from tests.waits import wait_for
from tools.bench.renumber import heard, listen_up, machine_id, renumber
from tools.faults.netns import NetLab, available

pytestmark = [pytest.mark.system, pytest.mark.root, pytest.mark.timeout(420)]

REASON = available()
if REASON is not None:
    pytestmark.append(pytest.mark.skip(reason=f"network namespaces unavailable: {REASON}"))

TTL_MS = 4000
WIRE_PORT = 8421  # the default


@pytest.fixture
def lab_mesh(tmp_path: Path) -> Iterator[tuple[NetLab, Mesh]]:
    env = {"BATON_LEASE_TTL_MS": str(TTL_MS)}
    with placed_mesh(tmp_path / "mesh", ["alpha", "bravo", "charlie"], env) as placed:
        yield placed


def test_three_machines_on_the_one_flag_answer_through_renumbering_wakeup_and_failover(
    lab_mesh: tuple[NetLab, Mesh], tmp_path: Path
) -> None:
    lab, mesh = lab_mesh
    with ChatServer(tmp_path / "sink.sqlite", host=lab.gateway, mode="telegram") as chat:
        for m in mesh.machines:
            m.env.update(chat.machine_env())
        store = f"git+file://{mesh.root}/lease.git"
        listen_up(mesh, "--lease-store", store, "--channel", f"telegram:{chat.url}")
        try:
            first = wait_for(mesh.synced_holder, 90, "a holder with its standbys", SYNC_POLL_S)
            assert first.status()["http"].startswith(f"http://{lab.address(first.name)}:")
            standby = next(m for m in mesh.machines if m is not first)
            with loading(chat, 300) as load:
                _, holder_took = renumber(lab, mesh, first, lab.address(first.name), 100)
                _, standby_took = renumber(lab, mesh, standby, lab.address(standby.name), 101)
            posted = load["posted"]
            wait_for(lambda: answered(chat, set(posted)), 120, "every message answered")
            print(f"heard again after: holder {holder_took:.2f} s, standby {standby_took:.2f} s")

            wait_for(mesh.synced_holder, 60, "the standbys in sync again", SYNC_POLL_S)
            out = standby.json("wakeup", timeout=120)  # a handoff on the new addresses
            assert out["outcome"] == "handed_over" and holder(mesh) is standby, out
            epoch = standby.status()["epoch"]
            wait_for(mesh.synced_holder, 60, "the standbys in sync", SYNC_POLL_S)
            standby.send_signal(signal.SIGKILL)  # a failover: no supervisor to restart it
            after = wait_for(lambda: failed_over(mesh, epoch), 90, "a new holder")
            assert after is not standby
            more = {post(chat, "t0", f"after-{i}"): ("t0", f"after-{i}") for i in range(10)}
            wait_for(lambda: answered(chat, set(more)), 90, "the new holder to answer")
            check_exactly_once(chat, {**posted, **more}, reported_ambiguous(mesh), mesh)
            assert holder(mesh, but=standby) is after
        except BaseException:
            dump(mesh)
            raise
        finally:
            mesh.stop()  # before its sink goes


def test_the_second_address_is_dialled_when_the_first_path_is_cut_and_a_new_port_is_found(
    lab_mesh: tuple[NetLab, Mesh],
) -> None:
    lab, mesh = lab_mesh
    alpha, bravo, charlie = mesh.machines
    second = lab.add_address(bravo.name, 102)  # before it starts: it advertises both
    listen_up(mesh)
    mesh.wait_all_reachable()
    first = lab.address(bravo.name)
    assert bravo.status()["endpoints"] == [f"tcp://{first}:8421", f"tcp://{second}:8421"]

    lab.block_port(bravo.name, first, WIRE_PORT)  # the first path is cut
    took = heard(time.time(), (alpha, bravo, f"//{second}:"), (charlie, bravo, f"//{second}:"))
    print(f"{bravo.name} reached on its second address after", [f"{t:.2f}" for t in took])

    bravo.stop()  # restarted on another wire port than it paired with
    bravo.up_with("--wire", "127.0.0.1:8431")  # --listen keeps the host: 0.0.0.0:8431
    took = heard(time.time(), (alpha, bravo, ":8431"), (charlie, bravo, ":8431"))
    print(f"{bravo.name} reached on its new port after", [f"{t:.2f}" for t in took])
    for o in (alpha, charlie):
        assert o.counter("registry.announce_refused.forged") == 0
        # (from bravo itself, or first through the holder's roster: either is fine)
        [seen] = [p for p in o.status()["peers"] if p["machine_id"] == machine_id(bravo)]
        assert seen["endpoints"] == [f"tcp://{first}:8431", f"tcp://{second}:8431"], seen
