"""The import rules of DESIGN.md section 4, enforced on the source tree."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "baton"
STDLIB = sys.stdlib_module_names

COMPOSITION_ROOTS = {
    "baton.node",
    "baton.supervisor",
    "baton.cli",
    "baton.cli_node",
    "baton.cli_info",
    "baton.cli_support",
    "baton.cli_pair",
    "baton.cli_members",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: relative import; use absolute baton.* imports")
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("baton.core")))
def test_core_imports_only_stdlib_and_core(module: str) -> None:
    bad = {
        i
        for i in MODULES[module]
        if not (top(i) in STDLIB or i == "__future__" or i.startswith("baton.core"))
    }
    assert not bad, f"{module} imports {sorted(bad)}; baton.core is standard library only"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("baton.actors")))
def test_actors_talk_to_ports_not_libraries(module: str) -> None:
    bad = {i for i in MODULES[module] if top(i) in {"zmq", "flask", "werkzeug", "git", "waitress"}}
    bad |= {i for i in MODULES[module] if i.startswith(("baton.stores", "baton.wire.zmq"))}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("baton.http")))
def test_http_reaches_the_node_through_services(module: str) -> None:
    bad = {
        i
        for i in MODULES[module]
        if top(i) in {"zmq", "git", "pykka"}
        or i.startswith(("baton.actors", "baton.wire", "baton.stores", "baton.node"))
    }
    assert not bad, f"{module} imports {sorted(bad)}"


def test_only_composition_roots_wire_concrete_adapters() -> None:
    offenders = {
        module: sorted(
            i
            for i in imports
            if i.startswith("baton.wire.zmq_transport")
            or i == "baton.node"
            or i.startswith("baton.supervisor")
        )
        for module, imports in MODULES.items()
        if module not in COMPOSITION_ROOTS and not module.startswith("baton.wire.zmq")
    }
    offenders = {m: i for m, i in offenders.items() if i}
    assert not offenders, f"only {sorted(COMPOSITION_ROOTS)} may wire adapters: {offenders}"


def test_rule_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import zmq\nfrom flask import Flask\n")
    assert {"zmq", "flask", "flask.Flask"} <= imports_of(bad)


def test_baton_http_and_flask_import_together_from_the_repository_root() -> None:
    """A top-level `http` package would shadow the standard library and break Flask."""
    code = (
        "import flask, baton.http, http.client, http.server; "
        "assert http.__file__.startswith(__import__('sysconfig').get_paths()['stdlib']), "
        "http.__file__; print('ok')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert not (ROOT / "http").exists() and not (ROOT / "http.py").exists()
