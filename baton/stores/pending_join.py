"""A join made while this machine's node runs (issue 17).

The running node owns the registry file and would write over a registry the CLI saved
beside it. So `baton join` on a running machine writes what the join decided (the mesh's
roster as this machine's registry, and the mesh settings its operator agreed to) to one
file, ``data/join.pending.json`` (0600, written atomically), and asks the node to restart
(SIGUSR1): the next start applies it (apply_pending_join) before it reads its settings
or opens the registry, then removes the file. With no node running, the CLI applies it
at once, the same way.

A pending file that cannot be read stops the start with HomeError and is left as it is
(nothing is lost; the operator can remove it and join again).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from baton.core import safejson
from baton.core.errors import HomeError
from baton.core.knobs import resolve_settings
from baton.core.registry import MachineRegistry
from baton.stores.config_file import read_config, write_config
from baton.stores.files import atomic_write, check_private_file
from baton.stores.home import HomePaths
from baton.stores.registry_store import JsonRegistryStore, registry_from_bytes, registry_to_bytes


def write_pending_join(
    paths: HomePaths, registry: MachineRegistry, adopted: Mapping[str, str]
) -> None:
    doc = {"registry": registry_to_bytes(registry).decode(), "settings": dict(adopted)}
    paths.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(paths.pending_join, json.dumps(doc).encode())


def apply_pending_join(paths: HomePaths) -> bool:
    """Apply a pending join, if there is one (True then)."""
    path = paths.pending_join
    if not path.exists():
        return False
    check_private_file(path)
    try:
        doc = safejson.loads(path.read_bytes())
        registry = registry_from_bytes(doc["registry"].encode(), str(path))
        adopted = doc["settings"]
        if not isinstance(adopted, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in adopted.items()
        ):
            raise ValueError("settings: expected an object of strings")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HomeError(f"{path} is corrupt ({exc}); it was left as it is") from None
    adopt_mesh_settings(paths, adopted)
    JsonRegistryStore(paths.registry).save(registry)
    path.unlink()
    return True


def adopt_mesh_settings(paths: HomePaths, offered: Mapping[str, str]) -> None:
    """Take the mesh's lease store, channel, agent and sandbox the operator agreed to;
    a host's sandbox is taken only where it is stricter than none (never a downgrade)."""
    offered = {k: v for k, v in offered.items() if (k, v) != ("agent_sandbox", "none")}
    if offered:
        config = {**read_config(paths.config), **offered}
        resolve_settings(config, {}, {})  # with this machine's own knobs too
        write_config(paths.config, config)
