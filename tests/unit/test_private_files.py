"""Secret files: refused when others may read them, when another user owns them, or when
they are a link (review of issue 16: a link planted beside a chat database in /tmp could
lend it the victim's own API token); written under a fresh name nobody prepared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from baton.core.errors import HomeError
from baton.stores.files import atomic_write, check_private_file


def test_a_link_to_a_private_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "api-token"
    atomic_write(secret, b"the victim's token\n")
    check_private_file(secret)
    link = tmp_path / "chat.sqlite.user-token"
    link.symlink_to(secret)
    with pytest.raises(HomeError, match="not a regular file"):
        check_private_file(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root (CI)")
def test_a_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "token"
    atomic_write(theirs, b"x\n")
    os.chown(theirs, 4242, -1)
    with pytest.raises(HomeError, match="uid 4242"):
        check_private_file(theirs)


def test_an_atomic_write_replaces_the_file_private_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "token"
    atomic_write(target, b"one\n")
    atomic_write(target, b"two\n")
    assert target.read_bytes() == b"two\n" and oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["token"]  # no temporary left
