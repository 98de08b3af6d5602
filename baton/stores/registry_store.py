"""The two RegistryStore adapters (the port is baton.core.registry.RegistryStore).

Contract (both adapters):
- load() returns the saved registry, or None if nothing was ever saved.
- save() replaces the saved registry atomically: a crash leaves the old or the new.
- A saved registry that cannot be read raises HomeError naming the file, and the
  file is left untouched (the node refuses to start rather than lose members).
"""

from __future__ import annotations

import json
from pathlib import Path

from baton.core import safejson
from baton.core.errors import BatonError, HomeError
from baton.core.registry import MachineEntry, MachineRegistry
from baton.stores.files import atomic_write

FORMAT = 1


def registry_to_bytes(registry: MachineRegistry) -> bytes:
    doc = {
        "format": FORMAT,
        "self_id": registry.self_id,
        "machines": [e.to_dict() for e in registry.listing()],
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def registry_from_bytes(data: bytes, source: str) -> MachineRegistry:
    try:
        doc = safejson.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"expected an object with format {FORMAT}")
        entries = [MachineEntry.from_dict(m) for m in doc["machines"]]
        by_id = {e.machine_id: e for e in entries}
        if len(by_id) != len(entries):
            raise ValueError("a machine is listed twice")
        registry = MachineRegistry(self_id=doc["self_id"], entries=by_id).check()
    except (ValueError, KeyError, TypeError, BatonError) as exc:
        detail = exc.detail if isinstance(exc, BatonError) else str(exc)
        raise HomeError(f"{source} is corrupt ({detail}); it was left as it is") from None
    return registry


class JsonRegistryStore:
    """The registry as one JSON file (0600) in the home's data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> MachineRegistry | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return registry_from_bytes(data, str(self.path))

    def save(self, registry: MachineRegistry) -> None:
        atomic_write(self.path, registry_to_bytes(registry))


class MemoryRegistryStore:
    """In-memory twin; keeps the encoded bytes so it round-trips like the file."""

    def __init__(self) -> None:
        self.data: bytes | None = None

    def load(self) -> MachineRegistry | None:
        return None if self.data is None else registry_from_bytes(self.data, "memory")

    def save(self, registry: MachineRegistry) -> None:
        self.data = registry_to_bytes(registry)
