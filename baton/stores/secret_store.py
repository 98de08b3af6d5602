"""SecretStore: this machine's secrets, encrypted at rest (AES-256-GCM).

The file ``data/secrets.bin`` (0600) is

    b"BATONSEC" | version (1 byte) | key id (8 bytes) | nonce (12 bytes) | ciphertext

where the ciphertext is AESGCM(master key) over the secrets document
(baton.core.secret_rules), authenticated together with the header before it. The key id is
the first 8 bytes of SHA-256 of the master key, so a file sealed under another key is
told apart from a damaged one. The master key and its rotation are
baton.stores.secret_keys'.

Invariants:
- A file that does not authenticate (SecretsCorrupt) or was sealed under another key
  (WrongSecretKey) is never written over: every change first reads the store whole.
- Changes are read-modify-write under a lock file (flock), each write atomic and fresh
  (a new nonce every time).
- Values never reach a log line, an error message or a repr.
- A removal is kept as a tombstone (so it travels between machines like a change);
  ``all`` and ``values`` see only the secrets that are set.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from baton.core import secret_rules as rules
from baton.core.errors import SecretsCorrupt, SecretsError, WrongSecretKey
from baton.core.secret_rules import Secret
from baton.stores.files import atomic_write, ensure_private_dir, read_private
from baton.stores.home import HomePaths
from baton.stores.secret_keys import Keychain, MasterKeys, key_id

log = logging.getLogger("baton.secrets")

MAGIC = b"BATONSEC"
VERSION = 1
NONCE_BYTES = 12
HEADER_BYTES = len(MAGIC) + 1 + 8
MAX_FILE_BYTES = 64 * 1024 * 1024


class SecretStore:
    def __init__(self, paths: HomePaths, machine_id: str, keychain: Keychain | None = None) -> None:
        self.paths = paths
        self.machine_id = machine_id
        self.keys = MasterKeys(paths, machine_id, keychain)
        self.file = paths.data_dir / "secrets.bin"
        self.lock_file = paths.data_dir / "secrets.lock"
        self.ref_file = self.keys.ref_file
        self.key_file = self.keys.key_file

    # --- the file --------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        ensure_private_dir(self.paths.data_dir)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _blob(self) -> bytes | None:
        if not self.file.exists():
            return None
        blob = read_private(self.file, MAX_FILE_BYTES)  # readable by others: refused
        if len(blob) > MAX_FILE_BYTES or len(blob) < HEADER_BYTES + NONCE_BYTES + 16:
            raise SecretsCorrupt(f"{self.file} is not a secret store (size {len(blob)})")
        if blob[: len(MAGIC)] != MAGIC or blob[len(MAGIC)] != VERSION:
            raise SecretsCorrupt(f"{self.file} is not a secret store baton wrote")
        return blob

    def _sealed_with(self) -> bytes | None:
        blob = self._blob()
        return None if blob is None else blob[len(MAGIC) + 1 : HEADER_BYTES]

    def _open(self) -> tuple[bytes | None, dict[str, Secret]]:
        """The master key (None before the first) and every secret, tombstones too."""
        key = self.keys.current(self._sealed_with)
        blob = self._blob()
        if blob is None:
            return key, {}
        header, nonce = blob[:HEADER_BYTES], blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        if key is None:
            raise SecretsError(f"{self.file} exists but this machine has no master key")
        if header[len(MAGIC) + 1 :] != key_id(key):
            raise WrongSecretKey(
                f"{self.file} was sealed under key {header[len(MAGIC) + 1 :].hex()}, this "
                f"machine's is {key_id(key).hex()}"
            )
        try:
            plain = AESGCM(key).decrypt(nonce, blob[HEADER_BYTES + NONCE_BYTES :], header)
        except InvalidTag:
            raise SecretsCorrupt(
                f"{self.file} fails its authentication: damaged or changed"
            ) from None
        return key, rules.decode(plain)

    def _write(self, key: bytes, secrets: dict[str, Secret]) -> None:
        header = MAGIC + bytes([VERSION]) + key_id(key)
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, rules.encode(secrets), header)
        atomic_write(self.file, header + nonce + sealed)

    def _change(self, secrets: dict[str, Secret], key: bytes | None) -> None:
        self._write(key or self.keys.new(), secrets)

    # --- what callers ask ------------------------------------------------------------

    def all(self) -> dict[str, Secret]:
        """Every secret that is set, values included (for the node; `list` shows none)."""
        return rules.live(self.entries())

    def entries(self) -> dict[str, Secret]:
        """Every secret and every removal remembered (what SecretSync compares)."""
        with self._locked():
            return self._open()[1]

    def set(self, name: str, value: str, now: float) -> None:
        with self._locked():
            key, secrets = self._open()  # a store without its key: refused before a new key
            self._change(rules.with_secret(secrets, name, value, self.machine_id, now), key)
        log.info("secret %s set", name)

    def remove(self, name: str, now: float) -> None:
        with self._locked():
            key, secrets = self._open()
            self._change(rules.without_secret(secrets, name, self.machine_id, now), key)
        log.info("secret %s removed", name)

    def take(self, name: str, theirs: Secret, now: float) -> bool:
        """Keep another machine's version of ``name`` if it is newer; whether it was."""
        with self._locked():
            key, secrets = self._open()
            changed = rules.taken(secrets, name, theirs, now)
            if changed is not None:
                self._change(changed, key)
        return changed is not None

    def rotate(self, removed: tuple[str, ...] = ()) -> str | None:
        """A new master key, the store sealed again under it and the old key gone; its
        id, None when there is no store yet (``removed`` is recorded as handled)."""
        with self._locked():
            key, secrets = self._open()
            if key is None:
                self.keys.handled(removed)
                return None
            fresh = self.keys.rotate(lambda new: self._write(new, secrets), removed)
        log.warning("rotated the secrets' master key (key %s)", fresh)
        return fresh

    def rotated_for(self) -> tuple[str, ...]:
        """The removed machines the master key was rotated for."""
        ref = self.keys.ref()
        return () if ref is None else ref.rotated_for

    def forget(self) -> list[str]:
        """Delete the store and its master key (a machine leaving the mesh); what was
        deleted."""
        with self._locked():
            gone = self.keys.forget()
            with contextlib.suppress(FileNotFoundError):
                self.file.unlink()
                gone.append(str(self.file))
        return gone

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever the file does (inode, time, size): a cheap look."""
        try:
            st = self.file.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def values(self, names: tuple[str, ...]) -> dict[str, str]:
        """The values of ``names`` (those set): what an agent is given."""
        if not names:
            return {}
        secrets = self.all()
        return {n: secrets[n].value for n in names if n in secrets}
