"""Run a real single-member etcd (Debian's etcd-server) on loopback for tests, and stop
it by pid afterwards, even when the test fails."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from baton.core.errors import LeaseStoreError
from baton.demo.devmesh import free_port, wait_for
from baton.stores.etcd_lease import EtcdLeaseStore


def etcd_binary() -> str | None:
    return shutil.which("etcd")


@contextlib.contextmanager
def running_etcd(data_dir: Path) -> Iterator[str]:
    """Yield the client URL of an etcd that answers; ``data_dir`` holds its data."""
    binary = etcd_binary()
    if binary is None:
        raise FileNotFoundError("etcd is not installed (apt-get install etcd-server)")
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    proc = subprocess.Popen(
        [
            binary,
            "--data-dir", str(data_dir),
            "--listen-client-urls", url,
            "--advertise-client-urls", url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"default={peer_url}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        store = EtcdLeaseStore(url, timeout_s=2.0)

        def answers() -> bool:
            try:
                store.read()
            except LeaseStoreError:
                return proc.poll() is not None  # it died: stop waiting (and fail below)
            return True

        wait_for(answers, 30, "etcd to answer")
        if proc.poll() is not None:
            raise RuntimeError(f"etcd exited with {proc.returncode}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
