"""baton.stores.git_cli: errors name the git command (not an option) and never a URL's
password; only a push to a file:// remote gets the guard against its hooks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from baton.core.errors import StateSyncError
from baton.stores.git_cli import push_guard, run_git, shown


@pytest.mark.parametrize(
    ("url", "seen"),
    [
        ("https://user:token@host/mesh.git", "https://***@host/mesh.git"),
        ("https://token@host/mesh.git", "https://***@host/mesh.git"),
        ("file:///srv/mesh.git", "file:///srv/mesh.git"),
        ("ssh://host/mesh.git", "ssh://host/mesh.git"),
    ],
)
def test_a_url_is_shown_without_its_credentials(url: str, seen: str) -> None:
    assert shown(url) == seen


def test_a_timeout_names_the_command_not_an_option(tmp_path: Path) -> None:
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)  # git waits to open it for reading: forever, but for the deadline
    with pytest.raises(StateSyncError, match=r"git hash-object took longer than 0\.5 s"):
        run_git(
            ["-c", "core.hooksPath=/dev/null", "hash-object", str(fifo)],
            cwd=tmp_path,
            timeout_s=0.5,
            error=StateSyncError,
        )


def test_only_local_pushes_get_the_guard() -> None:
    assert push_guard("file:///srv/mesh.git") and not push_guard("ssh://host/mesh.git")
