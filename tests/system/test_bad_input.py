"""Bad input at every door of a real node: a clear error naming the cause, nothing lost."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import nacl.public
import nacl.signing
import pytest
import zmq

from baton.core.identity import PublicIdentity
from baton.demo.devmesh import Machine, Mesh, free_port
from baton.stores.runfile import lock_holder
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]


def snapshot(home: Path) -> dict[str, tuple[int, str]]:
    """Mode and content hash of every file under the home except logs and run files."""
    out = {}
    for path in sorted(home.rglob("*")):
        rel = path.relative_to(home)
        if path.is_file() and rel.parts[0] not in {"logs", "run"}:
            out[str(rel)] = (path.stat().st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def failing(m: Machine, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    proc = m.baton(*args, "--json", check=False, **({"env_extra": env} if env else {}))
    assert proc.returncode != 0, proc.stdout
    return proc.returncode, json.loads(proc.stdout)


def assert_not_running(m: Machine) -> None:
    assert lock_holder(m.paths.supervisor_lock) is None
    assert lock_holder(m.paths.node_lock) is None


# --- start-up -------------------------------------------------------------------


def test_a_second_up_on_the_same_home_is_refused(make_mesh: Callable[..., Mesh]) -> None:
    m = make_mesh(1, link=False)[0]
    before = m.live_pids()
    _code, err = failing(m, "up", "--detach")
    assert err["error"] == "already_running" and str(before["supervisor"]) in err["detail"]
    assert m.live_pids() == before and m.card()["running"] is True


@pytest.mark.parametrize("which", ["http", "wire"])
def test_a_port_in_use_is_named_and_nothing_is_left_running(machine: Machine, which: str) -> None:
    before = snapshot(machine.home)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        code, err = failing(machine, "up", "--detach", f"--{which}", f"127.0.0.1:{port}")
    assert code == 78 and err["error"] == "address_in_use" and str(port) in err["detail"]
    assert_not_running(machine)
    assert snapshot(machine.home) == before


def test_a_flag_overrides_the_configured_port(machine: Machine) -> None:
    port = free_port()
    info = machine.json("up", "--detach", "--http", f"127.0.0.1:{port}")
    machine.remember(info["pid"], info["node_pid"])
    assert info["http"] == f"http://127.0.0.1:{port}"


def test_up_from_a_directory_holding_a_baton_directory_starts(
    machine: Machine, tmp_path: Path
) -> None:
    """Issue 16: `baton up --detach` from the parent of a clone failed with an ImportError:
    the supervisor ran as `python -m baton`, which puts the current directory first on
    the import path, and the clone's `baton/` shadowed the package. The console script
    is what a user runs, from there."""
    shadow = tmp_path / "parent-of-a-clone"
    (shadow / "baton").mkdir(parents=True)
    (shadow / "baton" / "__init__.py").write_text("raise ImportError('the shadow')\n")
    script = Path(sys.executable).with_name("baton")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    out = subprocess.run(
        [str(script), "up", "--detach", "--json", "--home", str(machine.home)],
        cwd=shadow, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    info = json.loads(out.stdout)
    machine.remember(info["pid"], info["node_pid"])
    assert machine.card()["running"] is True


@pytest.mark.parametrize(
    "config_line, knob",
    [
        ("colour = 'blue'\n", "colour"),
        ("renew_interval_ms = 9000\n", "renew_interval_ms"),
        ("lease_ttl_ms = 500\n", "lease_ttl_ms"),
        ("lease_ttl_ms = '15000'\n", "lease_ttl_ms"),
        ("this is not toml\n", "config.toml"),
    ],
)
def test_a_bad_config_stops_start_up_naming_the_knob(
    machine: Machine, config_line: str, knob: str
) -> None:
    with open(machine.paths.config, "a") as fh:
        fh.write(config_line)
    before = snapshot(machine.home)
    _code, err = failing(machine, "up", "--detach")
    assert err["error"] == "config_error" and knob in err["detail"]
    assert_not_running(machine)
    assert snapshot(machine.home) == before


@pytest.mark.parametrize(
    "env, knob",
    [({"BATON_LEASE_TTL_MS": "soon"}, "lease_ttl_ms"), ({"BATON_COLOUR": "blue"}, "BATON_COLOUR")],
)
def test_bad_environment_stops_start_up_naming_it(
    machine: Machine, env: dict[str, str], knob: str
) -> None:
    _code, err = failing(machine, "up", "--detach", env=env)
    assert err["error"] == "config_error" and knob in err["detail"]
    assert_not_running(machine)


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda p: p.signing_key.write_text("not base64 !!\n"), "signing.key"),
        (lambda p: p.encryption_key.write_bytes(b""), "encryption.key"),
        (lambda p: p.signing_key.unlink(), "signing.key"),
        (lambda p: p.signing_key.chmod(0o644), "chmod 600"),
        (lambda p: p.root.chmod(0o777), "chmod 700"),
        (lambda p: p.identity.write_text("{"), "identity.json"),
        (lambda p: p.registry.write_text("[]"), "registry.json"),
        (lambda p: p.config.chmod(0o666), "config.toml"),
        (lambda p: p.data_dir.chmod(0o777), "chmod 700"),
        (lambda p: p.run_dir.chmod(0o733), "chmod 700"),
    ],
)
def test_damaged_home_files_stop_start_up_and_are_left_as_they_are(
    machine: Machine, damage: Callable[..., None], needle: str
) -> None:
    machine.paths.registry.parent.mkdir(exist_ok=True)
    damage(machine.paths)
    before = snapshot(machine.home)
    _code, err = failing(machine, "up", "--detach")
    assert needle in err["detail"], err
    assert_not_running(machine)
    assert snapshot(machine.home) == before


def test_init_refuses_an_existing_identity_and_bad_nicknames(machine: Machine) -> None:
    before = snapshot(machine.home)
    code, err = failing(machine, "init", "--name", "other")
    assert code == 1 and err["error"] == "identity_exists"
    assert snapshot(machine.home) == before
    fresh = Machine("Bad Name!", machine.home.parent / "fresh")
    _code, err = failing(fresh, "init", "--name", "Bad Name!")
    assert err["error"] == "invalid_nickname"
    assert not fresh.home.exists()


def test_status_without_a_node_is_a_clear_error(machine: Machine) -> None:
    _code, err = failing(machine, "status")
    assert err["error"] == "not_running" and "baton up" in err["detail"]


# --- the wire ---------------------------------------------------------------------


class RawPeer:
    """A test-owned CURVE DEALER speaking to a node with keys of our choosing."""

    def __init__(self, target_wire: str, target_curve: bytes) -> None:
        self.signing = nacl.signing.SigningKey.generate()
        self.enc = nacl.public.PrivateKey.generate()
        self.identity = PublicIdentity.from_keys(
            "raw-peer", bytes(self.signing.verify_key), bytes(self.enc.public_key)
        )
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.immediate = True  # a send fails until the CURVE handshake has succeeded
        self.sock.curve_secretkey = bytes(self.enc)
        self.sock.curve_publickey = bytes(self.enc.public_key)
        self.sock.curve_serverkey = target_curve
        self.target_wire = target_wire

    def connect(self) -> None:
        """Dial the node. libzmq does not retry a refused handshake, so admit us first."""
        self.sock.connect(self.target_wire)

    @property
    def machine_id(self) -> str:
        return self.identity.machine_id

    def card(self) -> dict[str, str]:
        port = free_port()  # nobody listens there: the node's dials to us just fail
        return {
            **self.identity.to_dict(),
            "wire": f"tcp://127.0.0.1:{port}",
            "http": f"http://127.0.0.1:{port}",
        }

    def send(self, data: bytes) -> None:
        self.sock.send(data, zmq.NOBLOCK)

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def target(make_mesh: Callable[..., Mesh]) -> Iterator[tuple[Mesh, dict]]:
    mesh = make_mesh(2)
    mesh.wait_all_reachable()
    yield mesh, mesh[0].card()


def raw_peer(card: dict) -> RawPeer:
    return RawPeer(card["wire"], base64.b64decode(card["encryption_public"]))


def envelope(sender: str, to: str, **changes: object) -> bytes:
    doc = {"v": 1, "type": "ping", "from": sender, "to": to, "id": "x1", "epoch": 0, "body": {}}
    doc.update(changes)
    return json.dumps(doc).encode()


def test_bad_frames_from_a_member_are_dropped_and_counted(target: tuple[Mesh, dict]) -> None:
    mesh, card = target
    node = mesh[0]
    peer = raw_peer(card)
    try:
        node.json("machines", "add", "-", input=json.dumps(peer.card()))
        peer.connect()
        me, them = peer.machine_id, card["machine_id"]
        frames = {
            "malformed": b"\x00\xff garbage",
            "unknown_version": envelope(me, them, v=99),
            "unknown_type": envelope(me, them, type="launch-missiles"),
            "spoofed_sender": envelope(mesh[1].card()["machine_id"], them),
            "misaddressed": envelope(me, "m_aaaaaaaaaaaaaaaa"),
            "too_large": b"x" * (1024 * 1024 + 1),
        }
        for data in frames.values():
            wait_for(lambda d=data: _try_send(peer, d), 30, "the raw peer's link")

        def all_counted() -> bool:
            got = node.status()["counters"]
            return all(got.get(f"wire.dropped.{code}", 0) >= 1 for code in frames)

        wait_for(all_counted, 30, "every bad frame to be counted")
        metrics = _metrics(node)
        for code in frames:
            assert re.search(rf"^baton_wire_dropped_{code}_total 1\.0$", metrics, re.M), code
        peers = {p["nickname"]: p for p in node.status()["peers"]}
        assert set(peers) == {"m2", "raw-peer"}
        pongs = peers["m2"]["pongs"]
        wait_for(
            lambda: _peer(node, "m2")["pongs"] > pongs and _peer(node, "m2")["reachable"],
            15,
            "m1 to keep hearing from m2",
        )
    finally:
        peer.close()


def test_frames_from_an_unknown_key_are_refused_and_counted(target: tuple[Mesh, dict]) -> None:
    mesh, card = target
    node = mesh[0]
    denied = node.status()["counters"].get("wire.auth_denied", 0)
    received = node.status()["counters"].get("wire.received", 0)
    stranger = raw_peer(card)
    try:
        stranger.connect()
        assert not _try_send(stranger, envelope(stranger.machine_id, card["machine_id"]))
        wait_for(
            lambda: node.status()["counters"].get("wire.auth_denied", 0) > denied,
            30,
            "the node to refuse the stranger",
        )
        assert not _try_send(stranger, envelope(stranger.machine_id, card["machine_id"]))
        mesh.wait_all_reachable(timeout=10)
        wait_for(  # peers still get in
            lambda: node.status()["counters"]["wire.received"] > received,
            30,
            "a member's frame after the stranger's",
        )
    finally:
        stranger.close()


def test_a_card_reusing_a_members_key_is_refused_and_the_node_restarts_fine(
    target: tuple[Mesh, dict],
) -> None:
    mesh, card = target
    node = mesh[0]
    thief = raw_peer(card)
    try:
        stolen = {**thief.card(), "encryption_public": mesh[1].card()["encryption_public"]}
        proc = node.baton("machines", "add", "-", "--json", input=json.dumps(stolen), check=False)
        assert proc.returncode == 1 and json.loads(proc.stdout)["error"] == "invalid_card"
    finally:
        thief.close()
    node.json("down")
    info = node.up()
    assert info["node_pid"] and len(node.json("machines")) == 2
    mesh.wait_all_reachable()


def _peer(m: Machine, nickname: str) -> dict:
    return next(p for p in m.status()["peers"] if p["nickname"] == nickname)


def _try_send(peer: RawPeer, data: bytes) -> bool:
    try:
        peer.send(data)
    except zmq.Again:
        return False
    return True


def _metrics(m: Machine) -> str:
    with urllib.request.urlopen(m.card()["http"] + "/metrics", timeout=10) as r:
        return r.read().decode()


def test_home_files_keep_safe_modes(machine: Machine) -> None:
    for path in (
        machine.paths.signing_key,
        machine.paths.encryption_key,
        machine.paths.api_token,
        machine.paths.config,
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path
    for path in (machine.home, machine.paths.machine_dir):
        assert path.stat().st_mode & 0o777 == 0o700, path
    assert os.stat(machine.paths.identity).st_mode & 0o022 == 0
