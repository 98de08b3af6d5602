"""The UpdateRestartHandshake on disk: `baton restart` writes what it expects
(``data/restart.expected.json``, 0600, atomically); the node that starts next takes it
(reads and removes it). A file that does not read is removed and said so: a restart's
check must never keep a node from starting."""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict
from typing import Any

from baton.core import safejson
from baton.core.update_restart import UpdateRestartHandshake
from baton.stores.files import atomic_write
from baton.stores.home import HomePaths

log = logging.getLogger("baton.restart")


def write_handshake(paths: HomePaths, handshake: UpdateRestartHandshake) -> None:
    paths.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(paths.restart_handshake, json.dumps(handshake.to_dict()).encode())


def take_handshake(paths: HomePaths) -> tuple[UpdateRestartHandshake | None, str | None]:
    """The handshake a restart left (None: none), removed; or why it did not read."""
    path = paths.restart_handshake
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"{path}: {exc.strerror}"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    try:
        return UpdateRestartHandshake.from_dict(safejson.loads(data)), None
    except ValueError as exc:
        return None, f"{path} did not read ({exc}); removed"


def restart_check(paths: HomePaths, running: str) -> dict[str, Any] | None:
    """The node starting, running ``running``: what it makes of the restart that started
    it (None: no restart asked for one), said in its log and its status."""
    handshake, problem = take_handshake(paths)
    if problem is not None:
        log.error("restart: %s", problem)
        return {"ok": False, "kind": "unread", "detail": problem, "running": running}
    if handshake is None:
        return None
    outcome = handshake.judge(running)
    if outcome.ok:
        log.info("restart: %s", outcome.detail)
    else:
        log.error("restart: %s", outcome.detail)
    return {**handshake.to_dict(), "running": running, **asdict(outcome)}
