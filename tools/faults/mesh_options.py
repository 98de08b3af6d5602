"""How `tools/mesh.py up` started a mesh (DIR/mesh.json), so that faults by hand refuse
what the machines cannot obey, and a restart starts a machine the way it was started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from baton.demo.devmesh import Machine
from tools.faults import clock, hooks

FILE = "mesh.json"


def save(root: Path, options: dict[str, Any]) -> None:
    (root / FILE).write_text(json.dumps(options))


def load(root: Path) -> dict[str, Any]:
    """The options, or {} for a mesh started some other way."""
    try:
        return dict(json.loads((root / FILE).read_text()))
    except (OSError, ValueError):
        return {}


def prepare(m: Machine, root: Path, options: dict[str, Any]) -> None:
    """The environment ``m`` starts with under ``options`` (a wall-clock offset already
    set stays: a restart does not undo a jump)."""
    if options.get("fault_hooks"):
        hooks.enable(m)
    if options.get("faketime"):  # beside the home: init wants an empty one
        m.env.update(clock.faketime_env(root / f"{m.name}.faketime", offset=None))
    if options.get("ttl_ms"):
        m.env["BATON_LEASE_TTL_MS"] = str(options["ttl_ms"])
