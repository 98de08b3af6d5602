"""Safe file primitives: atomic writes with private permissions, permission checks.

Invariants:
- A file written by atomic_write is either the old content or the new, never a
  mix: write to a temp file in the same directory, fsync, rename, fsync the dir.
- Private files are created 0600 from the start (never chmod'ed after the fact),
  private directories 0700.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from baton.core.errors import HomeError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) 0700 if missing; leave an existing one alone."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Replace ``path`` with ``data`` atomically, the new file having ``mode``."""
    # a fresh name, created here (O_EXCL) and never through a link: in a directory others
    # can write, nobody can have prepared the file we write a secret into
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed or the file pre-existed
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_private_file(path: Path) -> None:
    """Refuse a secret file that others could read or write, that another user owns, or
    that is a symbolic link (like ssh does: a link could lend us someone's secret)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise HomeError(f"{path} is missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise HomeError(f"{path} is not a regular file (a link, a directory...)")
    if st.st_uid != os.geteuid():
        raise HomeError(f"{path} belongs to uid {st.st_uid}, not to this user")
    if st.st_mode & 0o077:
        raise HomeError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; it holds a secret and must "
            f"be readable by its owner only (chmod 600 {path})"
        )


def read_private(path: Path, limit: int) -> bytes:
    """A private regular file's bytes, at most ``limit`` + 1 of them (more than
    ``limit``: the caller refuses it). Checked as check_private_file does, then opened
    without following a link and without waiting: a FIFO swapped in after the check is
    refused (HomeError), never waited on."""
    check_private_file(path)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise HomeError(f"{path} is not a regular file")
        return fh.read(limit + 1)


def check_private_dir(path: Path) -> None:
    """Refuse a directory that other users could write into."""
    _check_not_writable_by_others(path, is_dir=True)


def check_own_file(path: Path) -> None:
    """Refuse a file that other users could write (config, registry): they could steer us."""
    _check_not_writable_by_others(path, is_dir=False)


def _check_not_writable_by_others(path: Path, is_dir: bool) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise HomeError(f"{path} is missing") from None
    if is_dir != stat.S_ISDIR(st.st_mode):
        raise HomeError(f"{path} is not a {'directory' if is_dir else 'regular file'}")
    if st.st_mode & 0o022:
        what = "replace files in it" if is_dir else "change it"
        raise HomeError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; other users could {what} "
            f"(chmod {'700' if is_dir else '600'} {path})"
        )
