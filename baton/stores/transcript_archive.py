"""FileTranscriptArchive: the files of the transcript archive under ``state/transcripts``
(the format: baton.core.transcript_archive).

Invariants:
- A part is replaced whole (a fresh file renamed over it), so a reader, git among them,
  sees the old part or the new one, never half of one. A temporary file left by a kill
  -9 is named ``.<part>.tmp-*``, which the archive's own ``.gitignore`` keeps out of
  every commit.
- Nothing is followed through a symbolic link: a topic directory or part that is one is
  not read (ArchiveError) nor written through (a part that is a link, a FIFO or a
  directory is replaced by the write). A topic whose last part is removed loses its
  directory too, unless something else is in it.
- Every failure of the file system is an ArchiveError naming the path; a part that is
  missing reads as None.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from pathlib import Path

from baton.core.errors import ArchiveError
from baton.core.transcript_archive import (
    DIR,
    MAX_PART_BYTES,
    part_index,
    part_name,
    topic_dir,
    topic_of,
)
from baton.stores.files import atomic_write

IGNORE = b".*.tmp-*\n"  # atomic_write's temporary files


class FileTranscriptArchive:
    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / DIR

    def _dir(self, topic: str) -> Path:
        return self.root / topic_dir(topic)

    def topics(self) -> list[str]:
        """Every topic with a directory here, sorted."""
        found = []
        for entry in self._scan(self.root):
            topic = topic_of(entry.name)
            if topic is not None and entry.is_dir(follow_symlinks=False):
                found.append(topic)
        return sorted(found)

    def parts(self, topic: str) -> list[int]:
        """The parts ``topic`` has, ascending."""
        entries = self._scan(self._dir(topic))
        found = (part_index(e.name) for e in entries if e.is_file(follow_symlinks=False))
        return sorted(p for p in found if p is not None)

    def signature(self, topic: str) -> tuple[int, ...]:
        """Changes whenever a part of ``topic`` is added, removed or rewritten."""
        sign: list[int] = []
        for part in self.parts(topic):
            try:
                st = (self._dir(topic) / part_name(part)).lstat()
            except FileNotFoundError:
                continue
            sign += [part, st.st_size, st.st_mtime_ns, st.st_ino]
        return tuple(sign)

    def read(self, topic: str, part: int) -> bytes | None:
        """The part's bytes (at most MAX_PART_BYTES + 1 of them); None when it is missing."""
        self._not_linked(self.root, self._dir(topic))
        path = self._dir(topic) / part_name(part)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ArchiveError(f"{path}: {_why(exc)}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ArchiveError(f"{path}: not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read(MAX_PART_BYTES + 1)
        except OSError as exc:
            raise ArchiveError(f"{path}: {_why(exc)}") from None
        finally:
            os.close(fd)

    def write(self, topic: str, part: int, data: bytes) -> None:
        """Replace the part with ``data`` (creating the topic's directory)."""
        folder = self._dir(topic)
        try:
            self._ensure(self.root)
            ignore = self.root / ".gitignore"
            if ignore.is_symlink() or not ignore.is_file():
                _clear(ignore)
                atomic_write(ignore, IGNORE, 0o600)
            self._ensure(folder)
            _clear(folder / part_name(part))
            atomic_write(folder / part_name(part), data, 0o600)
        except OSError as exc:
            raise ArchiveError(f"{folder / part_name(part)}: {_why(exc)}") from None

    def remove(self, topic: str, part: int) -> None:
        self._not_linked(self.root, self._dir(topic))
        path = self._dir(topic) / part_name(part)
        try:
            _clear(path)
            path.unlink(missing_ok=True)
            if part_index(path.name) is not None and not self.parts(topic):
                with contextlib.suppress(OSError):  # not empty: left as it is
                    path.parent.rmdir()
        except OSError as exc:
            raise ArchiveError(f"{path}: {_why(exc)}") from None

    @staticmethod
    def _not_linked(*folders: Path) -> None:
        for folder in folders:
            if folder.is_symlink():
                raise ArchiveError(f"{folder}: a symbolic link, not followed")

    def _ensure(self, folder: Path) -> None:
        self._not_linked(folder)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _scan(self, folder: Path) -> list[os.DirEntry[str]]:
        self._not_linked(folder)
        try:
            with os.scandir(folder) as entries:
                return list(entries)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ArchiveError(f"{folder}: {_why(exc)}") from None

    def __repr__(self) -> str:
        return f"FileTranscriptArchive({str(self.root)!r})"


def _clear(path: Path) -> None:
    """A directory where a file of ours goes is removed (a rename cannot replace it)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link, not followed"
    return exc.strerror or str(exc)
