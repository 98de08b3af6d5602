"""The fenced lease with real processes and a real git remote (a bare repository on
disk): kill -9, SIGSTOP, a clean stop, races, restarts, a holder cut off from the store,
and garbage on the lease ref. Times in role histories are CLOCK_BOOTTIME ms, one clock
for every machine on this host, so the histories can be laid side by side."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from baton.demo.devmesh import Machine, Mesh
from baton.demo.verdict import check, stretches
from tests.system.fencing_sink import FencingSink
from tests.waits import wait_for
from tools.etcd import etcd_binary, running_etcd

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

TTL_MS = 3000
TAKEOVER_S = 60  # generous: a loaded 2-core machine; the benchmark measures the real time


def lease(m: Machine) -> dict[str, Any]:
    return m.status()


def holds(m: Machine, epoch: int | None = None) -> bool:
    s = lease(m)
    return s["role"] == "awake" and (epoch is None or s["epoch"] == epoch)


def role_events(m: Machine) -> list[dict[str, Any]]:
    """``m``'s lease history as the chaos checker reads it."""
    return [{"kind": "role", "machine": m.name, **e} for e in lease(m)["history"]]


def assert_no_overlap(*machines: Machine) -> None:
    """No two machines acted as holder at once, and each stretch's epoch is above the
    one before (the chaos checker's rules, on the host's one CLOCK_BOOTTIME)."""
    report = check([e for m in machines for e in role_events(m)], [])
    assert not report.overlapping and not report.epochs_backwards, report.summary()


@pytest.fixture
def pair(make_mesh: Callable[..., Mesh]) -> tuple[Machine, Machine]:
    mesh = make_mesh(2, names=["alpha", "bravo"], lease_ttl_ms=TTL_MS)
    alpha, bravo = mesh.machines
    epoch = lease(alpha)["epoch"]
    wait_for(lambda: lease(bravo)["holder"] == lease(alpha)["machine_id"], 30, "bravo to see")
    assert epoch >= 1 and lease(bravo)["role"] == "standby"
    return alpha, bravo


def test_kill_9_of_the_holder_hands_the_lease_to_the_standby_and_the_old_one_rejoins(
    pair: tuple[Machine, Machine],
) -> None:
    alpha, bravo = pair
    epoch = lease(alpha)["epoch"]
    alpha.send_signal(signal.SIGKILL)
    wait_for(lambda: holds(bravo, epoch + 1), TAKEOVER_S, "bravo to hold epoch + 1")
    alpha.stop()  # the supervisor is gone too; make sure nothing of it lingers
    alpha.up()  # restart of the old holder: it comes back as a standby
    wait_for(lambda: lease(alpha)["holder"] == lease(bravo)["machine_id"], 30, "alpha to see bravo")
    assert lease(alpha)["role"] == "standby" and holds(bravo, epoch + 1)
    roles = {m["nickname"]: m["role"] for m in alpha.json("machines")}
    assert roles == {"alpha": "standby", "bravo": "awake"}
    assert_no_overlap(bravo)


def test_a_paused_holder_stands_down_when_it_wakes(pair: tuple[Machine, Machine]) -> None:
    alpha, bravo = pair
    epoch = lease(alpha)["epoch"]
    alpha.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: holds(bravo, epoch + 1), TAKEOVER_S, "bravo to hold epoch + 1")
    finally:
        alpha.send_signal(signal.SIGCONT)
    wait_for(lambda: lease(alpha)["holder"] == lease(bravo)["machine_id"], 30, "alpha to learn")
    s = lease(alpha)
    assert s["role"] == "standby" and s["epoch"] == epoch + 1
    assert_no_overlap(alpha, bravo)
    assert holds(bravo, epoch + 1)


def test_a_clean_stop_releases_and_the_standby_takes_over_without_the_ttl(
    pair: tuple[Machine, Machine],
) -> None:
    alpha, bravo = pair
    epoch = lease(alpha)["epoch"]
    alpha.json("down")
    wait_for(lambda: holds(bravo, epoch + 1), TAKEOVER_S, "bravo to hold epoch + 1")
    history = lease(bravo)["history"]
    released = [h for h in history if h["holder"] is None and h["epoch"] == epoch]
    assert released, f"bravo never saw alpha's release: {history}"
    assert bravo.counter("lease.refused.lease_forged") == 0


def test_two_standbys_racing_for_an_expired_lease_exactly_one_wins(
    make_mesh: Callable[..., Mesh],
) -> None:
    mesh = make_mesh(3, names=["alpha", "bravo", "charlie"], lease_ttl_ms=TTL_MS)
    alpha, bravo, charlie = mesh.machines
    wait_for(
        lambda: all(lease(m)["holder"] == lease(alpha)["machine_id"] for m in (bravo, charlie)),
        30,
        "both standbys to see alpha",
    )
    epoch = lease(alpha)["epoch"]
    alpha.send_signal(signal.SIGKILL)
    wait_for(lambda: holds(bravo) or holds(charlie), TAKEOVER_S, "a new holder")
    winner, loser = (bravo, charlie) if holds(bravo) else (charlie, bravo)
    assert lease(winner)["epoch"] == epoch + 1
    wait_for(lambda: lease(loser)["holder"] == lease(winner)["machine_id"], 30, "the loser")
    assert lease(loser)["role"] == "standby"
    assert not [s for s in stretches(role_events(loser)) if s.epoch == epoch + 1]
    assert_no_overlap(bravo, charlie)


def test_a_holder_cut_off_from_the_store_suspends_and_a_standby_takes_over(
    make_mesh: Callable[..., Mesh], tmp_path: Path
) -> None:
    """Each machine reaches the one remote through its own symlink; removing alpha's
    cuts alpha off from the store while the wire between them stays up."""
    mesh = make_mesh(2, up=False, names=["alpha", "bravo"], lease_ttl_ms=TTL_MS)
    alpha, bravo = mesh.machines
    remote = mesh.root / "lease.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    for m in (alpha, bravo):
        (mesh.root / f"{m.name}.git").symlink_to(remote)
        m.env["BATON_LEASE_STORE"] = f"git+file://{mesh.root}/{m.name}.git"
    mesh.pair_up()
    wait_for(lambda: lease(bravo)["holder"] == lease(alpha)["machine_id"], 30, "bravo to see")
    epoch = lease(alpha)["epoch"]
    (mesh.root / "alpha.git").unlink()
    wait_for(lambda: holds(bravo, epoch + 1), TAKEOVER_S, "bravo to take over")
    s = lease(alpha)
    assert s["role"] == "standby" and s["store"]["reachable"] is False and s["store"]["error"]
    assert any(h["reason"].startswith("self-suspended") for h in s["history"]), s["history"]
    assert alpha.counter("lease.alarm.store_unavailable") >= 1
    assert_no_overlap(alpha, bravo)


def test_garbage_on_the_lease_ref_is_an_alarm_and_the_mesh_recovers(
    pair: tuple[Machine, Machine], tmp_path: Path
) -> None:
    alpha, bravo = pair
    epoch = lease(alpha)["epoch"]
    remote = alpha.home.parent / "lease.git"
    work = tmp_path / "vandal"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / "lease.json").write_text("{not a lease")
    for args in (
        ["add", "lease.json"],
        ["-c", "user.name=v", "-c", "user.email=v@x", "commit", "-qm", "vandal"],
    ):
        subprocess.run(["git", *args], cwd=work, check=True)
    # the holder renews all the while: a push that meets a renewal at the ref's lock
    # ("cannot lock ref") is refused and made again
    vandal = ["git", "push", "-qf", f"file://{remote}", "HEAD:refs/baton/lease"]
    wait_for(lambda: subprocess.run(vandal, cwd=work).returncode == 0, 30, "the vandal's push")
    wait_for(lambda: alpha.counter("lease.alarm.store_garbage") >= 1, 30, "alpha's alarm")
    wait_for(lambda: holds(alpha) or holds(bravo), TAKEOVER_S, "a holder again")
    holder = alpha if holds(alpha) else bravo
    assert lease(holder)["epoch"] > epoch
    assert_no_overlap(alpha, bravo)


@pytest.fixture
def sink() -> Iterator[FencingSink]:
    s = FencingSink().start()
    try:
        yield s
    finally:
        s.close()


def test_a_paused_holders_act_in_flight_is_refused_as_stale_and_it_acts_no_more(
    make_mesh: Callable[..., Mesh], sink: FencingSink
) -> None:
    """Both machines act on a fencing sink while they may (fence_probe_url). alpha is
    paused with an act in flight; bravo takes over and acts; the old act lands stale;
    alpha wakes past its deadline and never acts again."""
    mesh = make_mesh(2, up=False, names=["alpha", "bravo"], lease_ttl_ms=TTL_MS)
    for m in mesh.machines:
        m.env["BATON_FENCE_PROBE_URL"] = sink.url
    mesh.pair_up()
    alpha, bravo = mesh.machines
    a_id, b_id = lease(alpha)["machine_id"], lease(bravo)["machine_id"]
    wait_for(lambda: len(sink.attempts(a_id)) >= 3, 30, "alpha to act")
    epoch = lease(alpha)["epoch"]
    sink.hold(a_id)
    assert sink.holding.wait(30), "alpha's next act never came"
    alpha.send_signal(signal.SIGSTOP)
    try:
        wait_for(
            lambda: any(a.outcome == "accepted" for a in sink.attempts(b_id)),
            TAKEOVER_S,
            "bravo to act as the new holder",
        )
        before = len(sink.attempts(a_id))
        sink.release()
        wait_for(lambda: len(sink.attempts(a_id)) > before, 30, "the held act to land")
    finally:
        alpha.send_signal(signal.SIGCONT)
    held = sink.attempts(a_id)[before]
    assert held.epoch == epoch and held.outcome == "stale", (held, sink.attempts())
    wait_for(lambda: lease(alpha)["role"] == "standby", 30, "alpha to stand down")
    wait_for(lambda: alpha.counter("probe.refused") == 1, 30, "alpha to hear the refusal")
    acted = len(sink.attempts(a_id))
    wait_for(lambda: len(sink.attempts(b_id)) >= 10, 30, "bravo to keep acting")
    assert len(sink.attempts(a_id)) == acted, "alpha acted again after it woke"
    first_new = min(a.at for a in sink.attempts(b_id) if a.epoch > epoch)
    late = [a for a in sink.attempts() if a.at > first_new and a.epoch <= epoch]
    assert all(a.outcome == "stale" for a in late), late
    assert_no_overlap(alpha, bravo)


def test_an_etcd_lease_store_fails_over_too(make_mesh: Callable[..., Mesh], tmp_path: Path) -> None:
    if etcd_binary() is None:
        pytest.skip("etcd is not installed (CI installs etcd-server)")
    with running_etcd(tmp_path / "etcd") as url:
        mesh = make_mesh(
            2, names=["alpha", "bravo"], lease_ttl_ms=TTL_MS, lease_store=f"etcd+{url}/mesh"
        )
        alpha, bravo = mesh.machines
        wait_for(lambda: lease(bravo)["holder"] == lease(alpha)["machine_id"], 30, "bravo")
        assert lease(bravo)["lease_store"] == f"etcd+{url}/mesh"  # handed over in pairing
        epoch = lease(alpha)["epoch"]
        alpha.send_signal(signal.SIGKILL)
        wait_for(lambda: holds(bravo, epoch + 1), TAKEOVER_S, "bravo to hold epoch + 1")
        assert lease(bravo)["store"]["where"].startswith("etcd ")
        mesh.stop()  # before etcd goes


def test_the_status_contract_with_a_lease(pair: tuple[Machine, Machine]) -> None:
    alpha, bravo = pair
    a, b = lease(alpha), lease(bravo)
    assert (a["role"], b["role"]) == ("awake", "standby")
    assert a["holder"] == b["holder"] == a["machine_id"] and a["epoch"] == b["epoch"] >= 1
    assert 0 < a["deadline_ms"] <= TTL_MS and b["deadline_ms"] is None
    assert a["ttl_ms"] == TTL_MS  # BATON_LEASE_TTL_MS took effect
    assert a["store"]["reachable"] is True and a["alarms"] == []
    assert a["history"][-1]["role"] == "awake"


def test_pair_on_a_standby_names_the_holder(pair: tuple[Machine, Machine]) -> None:
    _, bravo = pair
    proc = bravo.baton("pair", "--json", check=False)
    err = json.loads(proc.stdout)
    assert proc.returncode == 1 and "alpha holds the lease" in err["detail"], err
