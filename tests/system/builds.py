"""Other builds of baton for the version tests (issue 21): this checkout built with
another version string and range of wire protocols, as a wheel, and installed in a
virtual environment of its own. Its dependencies are the test run's own (a path file
names this environment's site-packages), and the wheel is built with the test run's
setuptools and wheel (the test extras): nothing is downloaded, no build environment is
made (each one cost seconds of a loaded CI host)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]

Patches = dict[str, dict[str, str]]


def build(
    root: Path, version: str, protocols: tuple[int, int], patches: Patches | None = None
) -> str:
    """Baton ``version`` speaking ``protocols`` (lo, hi), installed under ``root``: the
    path of its environment's Python."""
    python = environment(root / f"env-{version}")
    install(python, wheel(root, version, protocols, patches))
    return python


def wheel(
    root: Path, version: str, protocols: tuple[int, int], patches: Patches | None = None
) -> Path:
    """This checkout as the wheel of baton ``version`` speaking ``protocols``, with
    ``patches`` (a file under the project -> {pattern: line}, each pattern to match
    once) made to it first."""
    src = root / f"src-{version}"
    shutil.copytree(REPO / "baton", src / "baton", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    lo, hi = protocols
    _patch(src / "baton" / "__init__.py", {
        r'^__version__ = ".*"$': f'__version__ = "{version}"',
        r"^PROTOCOL_VERSION = \d+$": f"PROTOCOL_VERSION = {hi}",
        r"^PROTOCOL_MIN = \d+$": f"PROTOCOL_MIN = {lo}",
    })  # fmt: skip
    _patch(src / "pyproject.toml", {r'^version = ".*"$': f'version = "{version}"'})
    for name, changes in (patches or {}).items():
        _patch(src / name, changes)
    _run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "wheels"), str(src)])
    return next((root / "wheels").glob(f"baton-{version}-*.whl"))


def environment(env: Path) -> str:
    """A virtual environment whose dependencies are the test run's own: its Python."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)])
    python = str(env / "bin" / "python")
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    (Path(site.strip()) / "baton-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def install(python: str, built: Path) -> None:
    """Install (or, an update, replace) the wheel ``built`` in ``python``'s environment."""
    _run([*PIP, "--python", python, "install", "--no-deps", "--no-index", "--force-reinstall",
          str(built)])  # fmt: skip
    said = _run([python, "-P", "-c", "import baton; print(baton.__version__, baton.__file__)"])
    version = built.name.split("-")[1]
    env = str(Path(python).parent.parent)
    assert said.split()[0] == version and said.split()[1].startswith(env), said


def _patch(path: Path, changes: dict[str, str]) -> None:
    text = path.read_text()
    for pattern, line in changes.items():
        text, n = re.subn(pattern, line, text, count=1, flags=re.MULTILINE)
        assert n == 1, f"{pattern} not in {path}"
    path.write_text(text)


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout
