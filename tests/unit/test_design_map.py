"""docs/DESIGN.md is the map a newcomer starts from: its layout names every module of
baton, each path it names exists, and every class its glossary names is defined.

The layout is the code block of the "Layout" section, a tree: a line whose first word
ends in "/" opens a directory under the nearest less indented directory above it (or
at the repository root, at column 0); every ``*.py`` word on a line names a file in the
directory open at that line, or from the root when it starts with a top-level
directory (``tools/mesh.py``). The glossary is the "Glossary" section: a bold name that
starts with a capital (``**LeaseGate**``) and the leading name of a backticked one
(``Phase.HOLDING``) must be a class, Protocol or type alias at the top level of a module
under baton/, unless the bold name is followed by "(no class"; every backticked path
(``holder/gate.py``, ``stores/tail_*.py``) must match a file under baton/ or the root."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "DESIGN.md"
TOP = ("baton/", "tools/", "tests/", "docs/")
NOT_LISTED = {"__init__.py", "__main__.py"}
GLOSSARY_BASES = (ROOT / "baton", ROOT)  # the glossary's paths are under baton/ or whole

_PY = re.compile(r"(?<![\w./*-])([\w./-]+\.py)\b")
_DIR = re.compile(r"^( *)([\w./-]+/)(?:\s|$)")
_BOLD = re.compile(r"\*\*([A-Z]\w*)\*\*(\s*\(no class)?")
_TICKED = re.compile(r"`([^`\n]+)`")
_CLASSLIKE = re.compile(r"([A-Z]\w*[a-z]\w*)(?:$|[.(\[])")


def section(title: str, text: str | None = None) -> str:
    """The body of the ``## title`` section of docs/DESIGN.md."""
    text = DESIGN.read_text() if text is None else text
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : None if end < 0 else end]


def layout_paths(text: str | None = None) -> set[str]:
    """Every path the layout names (directories end in "/"), relative to the root."""
    body = section("Layout", text)
    block = body.split("```\n", 2)[1]
    open_dirs: list[tuple[int, str]] = []  # (indent, path), the innermost last
    named: set[str] = set()
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        while open_dirs and open_dirs[-1][0] >= indent and line.strip():
            open_dirs.pop()
        here = open_dirs[-1][1] if open_dirs else ""
        opened = _DIR.match(line)
        if opened:
            word = opened.group(2)
            path = word if not here or word.startswith(TOP) else here + word
            named.add(path)
            open_dirs.append((indent, path))
            here = path
        for word in _PY.findall(line):
            named.add(word if word.startswith(TOP) else here + word)
    return named


def defined_in_baton() -> set[str]:
    """The names baton defines at a module's top level: classes (Protocols among them)
    and assigned names (type aliases: ``X = ...``, ``X: T = ...``)."""
    names: set[str] = set()
    for path in (ROOT / "baton").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


def glossary_names(text: str | None = None) -> tuple[set[str], set[str]]:
    """(names that must be defined, names marked "no class") of the glossary."""
    body = section("Glossary", text)
    must: set[str] = set()
    exempt: set[str] = set()
    for name, no_class in _BOLD.findall(body):
        (exempt if no_class else must).add(name)
    for ticked in _TICKED.findall(body):
        leading = _CLASSLIKE.match(ticked)
        if leading:
            must.add(leading.group(1))
    return must - exempt, exempt


def glossary_paths(text: str | None = None) -> list[str]:
    return [t for t in _TICKED.findall(section("Glossary", text)) if t.endswith(".py")]


def missing(paths: Iterable[str], bases: Iterable[Path] = (ROOT,)) -> list[str]:
    """The paths (globs allowed) that match nothing under any of ``bases``."""
    return sorted(p for p in paths if not any(next(b.glob(p), None) for b in bases))


def baton_modules() -> set[str]:
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "baton").rglob("*.py")
        if p.name not in NOT_LISTED
    }


def test_every_path_in_the_layout_exists() -> None:
    assert missing(layout_paths()) == []


def test_every_module_of_baton_is_in_the_layout() -> None:
    assert sorted(baton_modules() - layout_paths()) == []


def test_every_class_the_glossary_names_is_defined_or_marked_no_class() -> None:
    must, exempt = glossary_names()
    defined = defined_in_baton()
    assert sorted(must - defined) == []
    # a "no class" mark that has become false is a stale map too
    assert sorted(exempt & defined) == []


def test_every_path_in_the_glossary_exists() -> None:
    assert missing(glossary_paths(), GLOSSARY_BASES) == []


# --- the checks can fail -------------------------------------------------------------

SAMPLE = """# a map

## Glossary

- **LeaseGate** (`holder/gate.py`), **NoSuchThing** (`holder/no_such.py`), `Phase.HOLDING`,
  **LiveTailSource** (no class: words), **node**, `stores/tail_*.py`, `BATON_HOME`.

## Layout

```
baton/
  core/            pure (enforced by tests/unit/test_import_rules.py)
    lease.py       the lease
    pairing.py, words.py  codes; continued on the next line, which names
                   clock.py
  wire/
    no_such.py     gone
tools/mesh.py      by hand
tools/faults/      signals.py,
                   hooks.py
  faketime_shim/sitecustomize.py  a shim
```

## Next
"""


def test_the_layout_is_read_as_a_tree() -> None:
    assert layout_paths(SAMPLE) == {
        "baton/",
        "baton/core/",
        "tests/unit/test_import_rules.py",
        "baton/core/lease.py",
        "baton/core/pairing.py",
        "baton/core/words.py",
        "baton/core/clock.py",
        "baton/wire/",
        "baton/wire/no_such.py",
        "tools/mesh.py",
        "tools/faults/",
        "tools/faults/signals.py",
        "tools/faults/hooks.py",
        "tools/faults/faketime_shim/sitecustomize.py",
    }
    assert missing(layout_paths(SAMPLE)) == ["baton/wire/no_such.py"]


def test_the_glossary_is_read_for_classes_and_paths() -> None:
    must, exempt = glossary_names(SAMPLE)
    assert (must, exempt) == ({"LeaseGate", "NoSuchThing", "Phase"}, {"LiveTailSource"})
    assert sorted(must - defined_in_baton()) == ["NoSuchThing"]
    assert glossary_paths(SAMPLE) == ["holder/gate.py", "holder/no_such.py", "stores/tail_*.py"]
    assert missing(glossary_paths(SAMPLE), GLOSSARY_BASES) == ["holder/no_such.py"]


def test_a_module_left_out_of_the_real_layout_is_found() -> None:
    text = DESIGN.read_text()
    module = min(baton_modules())
    name = module.rsplit("/", 1)[1]
    layout = section("Layout", text)
    cut = "\n".join(x for x in layout.splitlines() if name not in x)
    assert module in layout_paths(text)
    assert module not in layout_paths(text.replace(layout, cut))
