"""The import rules of docs/DESIGN.md, "Layout", enforced on the source tree."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "baton"
STDLIB = sys.stdlib_module_names

COMPOSITION_ROOTS = {
    "baton.node.root",
    "baton.node.ports",  # step 1 of the root: binds the wire
    "baton.node.process",
    "baton.node",  # only node_main, lazily, for supervisors started before the move
    "baton.node.supervisor",
    "baton.cli.commands",
    "baton.cli.lifecycle",
    "baton.cli.info",
    "baton.cli.support",
    "baton.cli.pair",
    "baton.cli.members",
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


#: What the sans-IO core may import from the standard library: values, text and pure
#: computation. Nothing that reads a clock, draws randomness, touches a file, a socket,
#: a process or a thread (time, os, socket, random, secrets, threading, subprocess,
#: sqlite3, ...): those come in as arguments, through ports.
CORE_STDLIB = {
    "__future__",
    "abc",
    "base64",
    "binascii",
    "bisect",
    "collections",
    "contextlib",
    "copy",
    "dataclasses",
    "enum",
    "functools",
    "hashlib",
    "heapq",
    "hmac",
    "ipaddress",
    "itertools",
    "json",
    "math",
    "operator",
    "re",
    "string",
    "struct",
    "textwrap",
    "types",
    "typing",
    "unicodedata",
}


def core_violations(imports: set[str]) -> set[str]:
    return {i for i in imports if not (top(i) in CORE_STDLIB or i.startswith("baton.core"))}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("baton.core")))
def test_core_imports_only_pure_stdlib_and_core(module: str) -> None:
    bad = core_violations(MODULES[module])
    assert not bad, f"{module} imports {sorted(bad)}; baton.core does no I/O"


@pytest.mark.parametrize(
    "io", ["time", "os", "socket", "random", "secrets", "threading", "subprocess", "sqlite3"]
)
def test_the_core_rule_refuses_io_from_the_standard_library(io: str, tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(f"import {io}\nfrom {io} import x\n")
    assert core_violations(imports_of(module)) == {io, f"{io}.x"}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("baton.actors")))
def test_actors_talk_to_ports_not_libraries(module: str) -> None:
    bad = {i for i in MODULES[module] if top(i) in {"zmq", "flask", "werkzeug", "git", "waitress"}}
    bad |= {i for i in MODULES[module] if i.startswith(("baton.stores", "baton.wire.zmq"))}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("baton.api")))
def test_http_reaches_the_node_through_services(module: str) -> None:
    bad = {
        i
        for i in MODULES[module]
        if top(i) in {"zmq", "git", "pykka"}
        or i.startswith(("baton.actors", "baton.wire", "baton.stores", "baton.node.root"))
    }
    assert not bad, f"{module} imports {sorted(bad)}"


def test_only_composition_roots_wire_concrete_adapters() -> None:
    offenders = {
        module: sorted(
            i
            for i in imports
            if i.startswith("baton.wire.zmq_transport")
            or i == "baton.node.root"
            or i.startswith("baton.node.supervisor")
        )
        for module, imports in MODULES.items()
        if module not in COMPOSITION_ROOTS and not module.startswith("baton.wire.zmq")
    }
    offenders = {m: i for m, i in offenders.items() if i}
    assert not offenders, f"only {sorted(COMPOSITION_ROOTS)} may wire adapters: {offenders}"


def test_the_command_line_and_the_demo_sit_on_top() -> None:
    """Nothing the node runs imports the CLI or the demo kit; they import the rest."""
    offenders = {
        module: sorted(i for i in imports if i.startswith(("baton.cli", "baton.demo")))
        for module, imports in MODULES.items()
        if not module.startswith(("baton.cli", "baton.demo")) and module != "baton.__main__"
    }
    offenders = {m: i for m, i in offenders.items() if i}
    assert not offenders, f"only the CLI and the demo import them: {offenders}"


def test_rule_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import zmq\nfrom flask import Flask\n")
    assert {"zmq", "flask", "flask.Flask"} <= imports_of(bad)


def test_no_package_or_module_shadows_the_standard_library() -> None:
    """A name like ``http`` or ``logging`` anywhere in the tree is one relative import
    or one ``sys.path`` entry away from hiding the standard library's (a top-level
    ``http`` package once broke Flask)."""
    shadows = sorted(
        str(p.relative_to(ROOT))
        for p in PACKAGE.rglob("*.py")
        for part in p.relative_to(PACKAGE).with_suffix("").parts
        if part in STDLIB
    )
    assert not shadows, f"these shadow the standard library: {shadows}"


def test_nothing_at_the_repository_root_shadows_the_standard_library() -> None:
    """The root is on sys.path for `python -m pytest` and `python -m tools.x`: a top-level
    `http` package or `logging.py` there would hide the standard library's (and break
    Flask)."""
    top_level = {p.stem for p in ROOT.glob("*.py")} | {
        p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
    }
    assert not sorted(top_level & STDLIB), "these names at the root shadow the standard library"
