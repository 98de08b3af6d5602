"""baton.stores.git_cli: errors name the git command (not an option) and never a URL's
password; a push to a file:// remote (the lease store's too) runs none of its hooks."""

from __future__ import annotations

import os
from pathlib import Path

import nacl.signing
import pytest

from baton.adapters.signing import Ed25519Signer
from baton.core.errors import StateSyncError
from baton.core.identity import derive_machine_id
from baton.core.lease_record import LeaseRecord, sign_record
from baton.stores.git_cli import push_guard, run_git, shown
from baton.stores.git_lease import GitLeaseStore, ensure_git_remote


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


def test_the_lease_stores_push_runs_none_of_the_remotes_hooks(tmp_path: Path) -> None:
    store_url = f"git+file://{tmp_path}/lease.git"
    ensure_git_remote(store_url)
    ran = tmp_path / "hook-ran"
    for name in ("pre-receive", "update", "post-receive"):
        hook = tmp_path / "lease.git" / "hooks" / name
        hook.write_text(f"#!/bin/sh\ntouch {ran}\n")
        hook.chmod(0o755)
    store = GitLeaseStore(store_url[len("git+") :], tmp_path / "clone")
    try:
        key = nacl.signing.SigningKey(bytes([7]) * 32)
        who = Ed25519Signer(derive_machine_id(bytes(key.verify_key)), key)
        written = store.cas(None, sign_record(LeaseRecord(who.machine_id, 1, 0, 3000, 1.7e9), who))
    finally:
        store.close()
    assert written.ok and not ran.exists()
