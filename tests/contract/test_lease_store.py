"""One contract, every LeaseStore: MemoryLeaseStore, GitLeaseStore on a real bare
repository (a real git remote on disk) and EtcdLeaseStore on a real etcd."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
import pytest

from baton.adapters.signing import Ed25519Signer
from baton.core.errors import ConfigError, LeaseStoreError
from baton.core.identity import derive_machine_id
from baton.core.lease_record import LeaseRecord, sign_record
from baton.core.lease_store import LeaseStore
from baton.demo.devmesh import free_port
from baton.stores.etcd_lease import KEY, EtcdLeaseStore, etcd_endpoint
from baton.stores.git_lease import REF, GitLeaseStore
from baton.stores.lease_memory import MemoryLeaseStore
from tools.etcd import etcd_binary, running_etcd

pytestmark = pytest.mark.timeout(120)


def signer(seed: int) -> Ed25519Signer:
    key = nacl.signing.SigningKey(bytes([seed]) * 32)
    return Ed25519Signer(derive_machine_id(bytes(key.verify_key)), key)


A, B = signer(1), signer(2)


def record(who: Ed25519Signer, epoch: int, nonce: int = 0, ttl_ms: int = 3000) -> LeaseRecord:
    return sign_record(LeaseRecord(who.machine_id, epoch, nonce, ttl_ms, 1.7e9), who)


@dataclass
class Kit:
    """A store under test, plus the means to break it the way its medium breaks."""

    make: Callable[[], LeaseStore]  # another client of the same store
    put_garbage: Callable[[bytes], None]
    broken: Callable[[], LeaseStore]  # a client that cannot reach the store


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def git_kit(tmp_path: Path) -> Kit:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    url = f"file://{remote}"
    clients = iter(range(1000))

    def make() -> LeaseStore:
        return GitLeaseStore(url, tmp_path / f"client{next(clients)}" / "lease.git")

    def put_garbage(data: bytes) -> None:
        work = tmp_path / "vandal"
        if not work.exists():
            git("init", "-q", str(work), cwd=tmp_path)
        (work / "lease.json").write_bytes(data)
        git("add", "lease.json", cwd=work)
        git("-c", "user.name=v", "-c", "user.email=v@x", "commit", "-qm", "x", cwd=work)
        git("push", "-qf", url, f"HEAD:{REF}", cwd=work)

    def broken() -> LeaseStore:
        return GitLeaseStore(f"file://{tmp_path}/nowhere.git", tmp_path / "lost" / "lease.git")

    return Kit(make, put_garbage, broken)


def memory_kit(tmp_path: Path) -> Kit:
    store = MemoryLeaseStore()
    down = MemoryLeaseStore()
    down.down = True
    return Kit(lambda: store, store.put_garbage, lambda: down)


@contextlib.contextmanager
def etcd_kit(tmp_path: Path) -> Iterator[Kit]:
    """A real etcd (Debian's etcd-server) on loopback, stopped by pid afterwards."""
    if etcd_binary() is None:
        pytest.skip("etcd is not installed (CI installs etcd-server)")
    with running_etcd(tmp_path / "etcd") as url:

        def put_garbage(data: bytes) -> None:
            key = base64.b64encode(KEY.encode()).decode()
            body = {"key": key, "value": base64.b64encode(data).decode()}
            request = urllib.request.Request(f"{url}/v3/kv/put", json.dumps(body).encode())
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10)

        def broken() -> LeaseStore:
            return EtcdLeaseStore(f"http://127.0.0.1:{free_port()}", timeout_s=2.0)

        yield Kit(lambda: EtcdLeaseStore(url), put_garbage, broken)


@pytest.fixture(params=["memory", "git", "etcd"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    if request.param == "etcd":
        with etcd_kit(tmp_path) as kit:
            yield kit
        return
    yield {"memory": memory_kit, "git": git_kit}[request.param](tmp_path)


def test_an_empty_store_holds_nothing(kit: Kit) -> None:
    stored = kit.make().read()
    assert stored.empty and stored.record is None and stored.problem is None


def test_cas_from_nothing_then_from_the_token(kit: Kit) -> None:
    store = kit.make()
    first = store.cas(None, record(A, 1))
    assert first.ok and first.current.record == record(A, 1)
    assert store.read() == first.current  # the same token and record, read back
    renewed = store.cas(first.current.token, record(A, 1, 1))
    assert renewed.ok and renewed.current.record == record(A, 1, 1)
    assert renewed.current.token != first.current.token


def test_a_cas_from_an_old_token_loses_and_shows_the_winner(kit: Kit) -> None:
    store, other = kit.make(), kit.make()
    first = store.cas(None, record(A, 1))
    assert other.cas(first.current.token, record(B, 2)).ok
    lost = store.cas(first.current.token, record(A, 1, 1))
    assert not lost.ok and lost.current.record == record(B, 2)
    again = store.cas(None, record(A, 3))  # "nothing stored" is a stale expectation too
    assert not again.ok and again.current.record == record(B, 2)
    assert kit.make().read().record == record(B, 2)


def test_racing_cas_from_one_token_has_exactly_one_winner(kit: Kit) -> None:
    stores = [kit.make() for _ in range(4)]
    start = stores[0].cas(None, record(A, 1))
    results: dict[int, bool] = {}
    barrier = threading.Barrier(len(stores))

    def race(i: int) -> None:
        barrier.wait(30)
        results[i] = stores[i].cas(start.current.token, record(B, 2, i)).ok

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [i for i, ok in results.items() if ok]
    assert len(results) == len(stores) and len(winners) == 1, results
    assert kit.make().read().record == record(B, 2, winners[0])


@pytest.mark.parametrize(
    "garbage",
    [b"not json", b'{"holder": "m_x"}', b"[]", b"\xff\xfe", b"[" * 3000 + b"]" * 3000],
)
def test_garbage_is_reported_with_a_token_and_can_be_replaced(kit: Kit, garbage: bytes) -> None:
    store = kit.make()
    store.cas(None, record(A, 1))
    kit.put_garbage(garbage)
    stored = store.read()
    assert stored.record is None and stored.token is not None and stored.problem
    lost = store.cas(None, record(A, 2))
    assert not lost.ok and lost.current.token == stored.token and lost.current.record is None
    assert store.cas(stored.token, record(A, 2)).ok
    assert store.read().record == record(A, 2)


def test_an_unreachable_store_raises_and_is_never_a_lost_cas(kit: Kit) -> None:
    broken = kit.broken()
    with pytest.raises(LeaseStoreError):
        broken.read()
    with pytest.raises(LeaseStoreError):
        broken.cas(None, record(A, 1))
    assert kit.make().read().empty  # nothing was written anywhere


def test_describe_names_the_store(kit: Kit) -> None:
    assert kit.make().describe()


def test_a_token_that_cannot_be_the_stores_loses_like_a_stale_one(kit: Kit) -> None:
    """A token a peer passed on may be wrong; that is a lost CAS, never an error."""
    store = kit.make()
    store.cas(None, record(A, 1))
    for bogus in ("not-a-token", "12345", "f" * 40, "\u0661\u0662", "9" * 30):
        lost = store.cas(bogus, record(B, 2))
        assert not lost.ok and lost.current.record == record(A, 1)


def test_writing_what_is_already_stored_from_a_stale_token_is_a_lost_cas(kit: Kit) -> None:
    """git says "up to date" before it checks the lease; that is not our write."""
    store = kit.make()
    first = store.cas(None, record(A, 1))
    again = store.cas(None, record(A, 1))
    assert first.ok and not again.ok and again.current == first.current


def test_git_prunes_its_private_objects_without_breaking_a_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("baton.stores.git_lease.GC_EVERY", 2)
    store, token = git_kit(tmp_path).make(), None
    for nonce in range(6):
        result = store.cas(token, record(A, 1, nonce))
        assert result.ok, nonce
        token = result.current.token


def test_an_etcd_that_never_answers_times_out_as_an_error() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        store = EtcdLeaseStore(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=1.0)
        with pytest.raises(LeaseStoreError, match="timed out"):
            store.read()
        with pytest.raises(LeaseStoreError, match="timed out"):
            store.cas(None, record(A, 1))
    finally:
        silent.close()


@pytest.mark.parametrize(
    "where, base, key",
    [
        ("etcd+http://127.0.0.1:2379", "http://127.0.0.1:2379", "baton/lease"),
        ("etcd+http://db:2379/mesh-a/", "http://db:2379", "mesh-a/baton/lease"),
    ],
)
def test_etcd_lease_store_urls(where: str, base: str, key: str) -> None:
    assert etcd_endpoint(where) == (base, key)
    with pytest.raises(ConfigError):
        etcd_endpoint("etcd+https://x")


# --- what only the git store has to prove --------------------------------------------


def test_git_renewals_do_not_grow_history(tmp_path: Path) -> None:
    kit = git_kit(tmp_path)
    store = kit.make()
    token = None
    for nonce in range(20):
        result = store.cas(token, record(A, 1, nonce))
        assert result.ok
        token = result.current.token
    remote = tmp_path / "remote.git"
    assert git("rev-list", "--count", REF, cwd=remote) == "1"
    assert git("rev-parse", REF, cwd=remote) == token


def test_git_garbage_that_is_not_a_lease_commit(tmp_path: Path) -> None:
    """A ref pointing at a commit without lease.json is garbage, not a crash."""
    kit = git_kit(tmp_path)
    work = tmp_path / "vandal"
    git("init", "-q", str(work), cwd=tmp_path)
    (work / "other.txt").write_text("hello")
    git("add", "other.txt", cwd=work)
    git("-c", "user.name=v", "-c", "user.email=v@x", "commit", "-qm", "x", cwd=work)
    git("push", "-qf", f"file://{tmp_path}/remote.git", f"HEAD:{REF}", cwd=work)
    stored = kit.make().read()
    assert stored.record is None and stored.token and "lease" in (stored.problem or "")


def test_a_slow_git_remote_times_out_as_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_SSH_COMMAND", "sh -c 'sleep 60'")  # an ssh remote that never answers
    store = GitLeaseStore("ssh://127.0.0.1/mesh.git", tmp_path / "lease.git", timeout_s=1.0)
    with pytest.raises(LeaseStoreError, match="longer than 1 s"):
        store.cas(None, record(A, 1))
    with pytest.raises(LeaseStoreError, match="longer than 1 s"):
        store.read()


def test_a_stale_lock_left_on_a_file_remote_by_a_killed_git_is_removed(tmp_path: Path) -> None:
    """A SIGKILLed receive-pack leaves the remote's ref locked; every push after it would
    fail for good. A lock older than any of our pushes can run is removed; a fresh one
    (another push running) is left alone and the write fails as unknown."""
    kit = git_kit(tmp_path)
    store = kit.make()
    first = store.cas(None, record(A, 1))
    assert first.ok
    lock = tmp_path / "remote.git" / f"{REF}.lock"
    lock.write_text("0" * 40 + "\n")
    with pytest.raises(LeaseStoreError, match="another push runs"):
        store.cas(first.current.token, record(A, 1, 1))
    assert lock.exists()
    old = time.time() - 60
    os.utime(lock, (old, old))
    second = store.cas(first.current.token, record(A, 1, 2))
    assert second.ok and not lock.exists()
    assert store.read().record == record(A, 1, 2)
