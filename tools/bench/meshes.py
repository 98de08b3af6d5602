"""What the benchmarks of real meshes share: three machines answering a chat service,
paired around a git lease store (a bare repository on disk)."""

from __future__ import annotations

from pathlib import Path

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import Mesh, wait_for

NAMES = ["alpha", "bravo", "charlie"]


def pair_up(mesh: Mesh, root: Path, chat: ChatServer, ttl_ms: int, agent: str = "") -> None:
    """``mesh``'s machines answering ``chat`` (as Telegram in its telegram mode), the
    first founding the mesh with a lease store under ``root``, the others paired in;
    once every one sees a holder. The caller made ``mesh`` and stops it."""
    for m in mesh.machines:
        m.env["BATON_LEASE_TTL_MS"] = str(ttl_ms)
        m.env.update(chat.machine_env())
    scheme = "telegram" if chat.mode == "telegram" else "local"
    args = ["--lease-store", f"git+file://{root}/lease.git", "--channel", f"{scheme}:{chat.url}"]
    mesh.machines[0].init(None, None, *args, *(["--agent", agent] if agent else []))
    for m in mesh.machines[1:]:
        m.init()
    mesh.pair_up()
    for m in mesh.machines:
        wait_for(lambda m=m: m.status()["holder"], 60, f"{m.name} to see a holder")  # type: ignore[misc]
