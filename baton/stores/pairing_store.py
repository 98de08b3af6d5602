"""The two PairingSessionStore adapters: a private JSON file and an in-memory twin.

The port itself, PairingSessionStore, is defined in baton.core.pairing (actors may not
import baton.stores) and re-exported here. Contract (both adapters):
- load() returns the saved session, or None if there is none.
- save(session) replaces the saved session atomically: a crash leaves the old or the new.
- clear() removes the saved session; clearing an empty store is fine.
- A saved session that cannot be read (not JSON, wrong format, a field missing or of
  the wrong type, or a file other users could read) makes load() raise HomeError naming
  it, and it is left untouched. Error details never quote the stored code.
"""

from __future__ import annotations

import json
from pathlib import Path

from baton.core import safejson
from baton.core.errors import HomeError
from baton.core.pairing import PairingSession, PairingSessionStore
from baton.stores.files import atomic_write, check_private_file, fsync_dir

__all__ = [
    "FilePairingSessionStore",
    "MemoryPairingSessionStore",
    "PairingSessionStore",
    "session_from_bytes",
    "session_to_bytes",
]

FORMAT = 1


def session_to_bytes(session: PairingSession) -> bytes:
    doc = {"format": FORMAT, "session": session.to_dict()}
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def session_from_bytes(data: bytes, source: str) -> PairingSession:
    """Decode what save() wrote, or raise HomeError naming ``source``."""
    try:
        doc = safejson.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"expected an object with format {FORMAT}")
        if set(doc) != {"format", "session"}:
            raise ValueError("expected exactly the keys format and session")
        return PairingSession.from_dict(doc["session"])
    except ValueError as exc:  # incl. JSONDecodeError, UnicodeDecodeError, safejson.TooDeep
        raise HomeError(f"{source} is corrupt ({exc}); it was left as it is") from None


class FilePairingSessionStore:
    """The session as one JSON file, mode 0600 (it holds the secret code)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> PairingSession | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HomeError(f"{self.path} cannot be read ({exc.strerror})") from None
        check_private_file(self.path)
        return session_from_bytes(data, str(self.path))

    def save(self, session: PairingSession) -> None:
        atomic_write(self.path, session_to_bytes(session))

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(self.path.parent)  # a cleared session must not come back after a crash


class MemoryPairingSessionStore:
    """In-memory twin; keeps the encoded bytes so it round-trips like the file."""

    def __init__(self) -> None:
        self.data: bytes | None = None

    def load(self) -> PairingSession | None:
        return None if self.data is None else session_from_bytes(self.data, "memory")

    def save(self, session: PairingSession) -> None:
        self.data = session_to_bytes(session)

    def clear(self) -> None:
        self.data = None
