"""Fixtures that start real baton machines on loopback and always tear them down by pid."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import Machine, Mesh
from tests.system.runs import processes_under


@pytest.fixture
def make_mesh(tmp_path: Path) -> Iterator[Callable[..., Mesh]]:
    """make_mesh(n, up=True, link=True, names=None, lease_ttl_ms=None) -> Mesh; all
    stopped at teardown."""
    meshes: list[Mesh] = []

    def make(
        n: int,
        *,
        up: bool = True,
        link: bool = True,
        names: list[str] | None = None,
        lease_ttl_ms: int | None = None,
        lease_store: str | None = None,
        init_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Mesh:
        """With ``lease_ttl_ms``: a mesh with a lease store (``lease_store``, by default a
        git one on a bare repository in the mesh's directory), built by real pairing
        (Mesh.pair_up) when ``up``; ``init_args`` go to the first machine's init (the
        others take the mesh's settings in pairing), ``env`` to every machine."""
        root = tmp_path / f"mesh{len(meshes)}"
        mesh = Mesh(root, names) if names else Mesh.of(root, n)
        meshes.append(mesh)
        if lease_ttl_ms is None:
            mesh.init()
            if up:
                mesh.up()
            if up and link:
                mesh.link()
            return mesh
        for m in mesh.machines:
            m.env["BATON_LEASE_TTL_MS"] = str(lease_ttl_ms)
            m.env.update(env or {})
        store = lease_store or f"git+file://{root}/lease.git"
        mesh.machines[0].init(None, None, "--lease-store", store, *init_args)
        for m in mesh.machines[1:]:
            m.init()
        if up:
            mesh.pair_up()
        return mesh

    yield make
    left: list[int] = []
    for mesh in meshes:
        mesh.stop()
        for m in mesh.machines:
            left += m.survivors()
    assert not left, f"processes left behind: {sorted(left)}"


@pytest.fixture
def machine(make_mesh: Callable[..., Mesh]) -> Machine:
    """One initialised machine, not started."""
    return make_mesh(1, up=False)[0]


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[ChatServer]:
    server = ChatServer(tmp_path / "chat.sqlite")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["fencing", "telegram"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChatServer]:
    """The chat service as a fencing sink, and as one that forgives nothing (Telegram)."""
    with ChatServer(tmp_path / "sink.sqlite", mode=request.param) as server:
        yield server


@pytest.fixture
def clean(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path`` as TMPDIR for the run; whatever the run left alive is killed after
    the test (the test itself fails on it)."""
    yield tmp_path
    for pid in processes_under(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def one_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests that take it run one after another across every xdist worker (a file lock
    in the run's shared temporary root; the lock ends with the holder's process). Not
    ``--dist loadgroup``: on pytest 9.2 it silently stops grouping (pytest-xdist issue
    1386), and three chaos campaigns at once beside the other system tests overload a
    2-core host."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this run
    with open(root / "one-at-a-time.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
