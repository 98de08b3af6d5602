"""SecretStore: this machine's secrets, encrypted at rest (AES-256-GCM).

The file ``data/secrets.bin`` (0600) is

    b"BATONSEC" | version (1 byte) | key id (8 bytes) | nonce (12 bytes) | ciphertext

where the ciphertext is AESGCM(master key) over the secrets document
(baton.core.secret_rules), authenticated together with the header before it. The key id is
the first 8 bytes of SHA-256 of the master key, so a file sealed under another key is
told apart from a damaged one.

The master key (32 random bytes) lives in the OS keychain through ``keyring`` where one
works (macOS Keychain, the Secret Service, Windows' vault), else in
``machine/secrets.key`` (0600). ``machine/secrets-key.json`` records which, and the key
id: a keychain that cannot be reached later is an error that says so, never a new key.

Invariants:
- A file that does not authenticate (SecretsCorrupt) or was sealed under another key
  (WrongSecretKey) is never written over: every change first reads the store whole.
- Changes are read-modify-write under a lock file (flock), each write atomic and fresh
  (a new nonce every time).
- Values never reach a log line, an error message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from baton.core import safejson
from baton.core import secret_rules as rules
from baton.core.errors import NoSuchSecret, SecretsCorrupt, SecretsError, WrongSecretKey
from baton.core.secret_rules import Secret
from baton.stores.files import atomic_write, ensure_private_dir, read_private
from baton.stores.home import HomePaths

log = logging.getLogger("baton.secrets")

MAGIC = b"BATONSEC"
VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
HEADER_BYTES = len(MAGIC) + 1 + 8
MAX_FILE_BYTES = 64 * 1024 * 1024
KEYCHAIN_SERVICE = "baton"
SMALL_FILE_BYTES = 4096


class Keychain(Protocol):
    """What the store asks of an OS keychain (``keyring``'s backends have it)."""

    def get_password(self, service: str, username: str) -> str | None: ...

    def set_password(self, service: str, username: str, password: str) -> None: ...


def system_keychain() -> Keychain | None:
    """The OS keychain through ``keyring``, None where none works (a server, CI)."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    return backend


def _small(path: Path) -> bytes:
    """A key or a key reference: small, or not what baton wrote."""
    data = read_private(path, SMALL_FILE_BYTES)
    if len(data) > SMALL_FILE_BYTES:
        raise SecretsCorrupt(f"{path} is too big to be what baton wrote")
    return data


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:8]


@dataclass(frozen=True)
class KeyRef:
    where: str  # "keychain" | "file"
    key_id: str  # hex


class SecretStore:
    def __init__(self, paths: HomePaths, machine_id: str, keychain: Keychain | None = None) -> None:
        self.paths = paths
        self.machine_id = machine_id
        self.keychain = keychain
        self.file = paths.data_dir / "secrets.bin"
        self.lock_file = paths.data_dir / "secrets.lock"
        self.ref_file = paths.machine_dir / "secrets-key.json"
        self.key_file = paths.machine_dir / "secrets.key"

    # --- the master key --------------------------------------------------------------

    def _key(self) -> bytes | None:
        """The master key, None before the first secret is set."""
        ref = self._ref()
        if ref is None:
            return None
        key = self._key_from(ref)
        if key_id(key).hex() != ref.key_id:
            raise WrongSecretKey(f"the master key in the {ref.where} is not the one recorded")
        return key

    def _ref(self) -> KeyRef | None:
        if not self.ref_file.exists():
            return None
        try:
            doc: Any = safejson.loads(_small(self.ref_file))
            ref = KeyRef(doc["where"], doc["key_id"])
            if ref.where not in ("keychain", "file") or not isinstance(ref.key_id, str):
                raise ValueError("not a key reference")
        except (ValueError, KeyError, TypeError) as exc:
            raise SecretsCorrupt(f"{self.ref_file} does not read: {exc!r:.200}") from None
        return ref

    def _key_from(self, ref: KeyRef) -> bytes:
        if ref.where == "keychain":
            if self.keychain is None:
                raise SecretsError("the master key is in the OS keychain, and none is reachable")
            try:
                text = self.keychain.get_password(KEYCHAIN_SERVICE, self._account())
            except Exception as exc:  # keyring's errors are many and backend-specific
                raise SecretsError(
                    f"the OS keychain did not answer: {type(exc).__name__}"
                ) from None
            if text is None:
                raise SecretsError("the OS keychain has no baton master key for this machine")
        else:
            try:
                text = _small(self.key_file).decode("ascii")
            except UnicodeDecodeError:
                raise SecretsCorrupt(f"{self.key_file} does not read") from None
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SecretsCorrupt(f"the master key in the {ref.where} does not read") from None
        if len(key) != KEY_BYTES:
            raise SecretsCorrupt(f"the master key in the {ref.where} is not {KEY_BYTES} bytes")
        return key

    def _new_key(self) -> bytes:
        key = os.urandom(KEY_BYTES)
        text = base64.b64encode(key).decode()
        where = "file"
        if self.keychain is not None:
            try:
                self.keychain.set_password(KEYCHAIN_SERVICE, self._account(), text)
                where = "keychain"
            except Exception as exc:
                log.warning(
                    "the OS keychain refused the key (%s); a 0600 file holds it", type(exc).__name__
                )
        if where == "file":
            atomic_write(self.key_file, text.encode())
        ref = {"where": where, "key_id": key_id(key).hex()}
        atomic_write(self.ref_file, json.dumps(ref).encode())
        return key

    def _account(self) -> str:
        return f"{self.machine_id}:secrets"

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

    def _read(self, key: bytes | None) -> dict[str, Secret]:
        if not self.file.exists():
            return {}
        blob = read_private(self.file, MAX_FILE_BYTES)  # readable by others: refused
        if len(blob) > MAX_FILE_BYTES or len(blob) < HEADER_BYTES + NONCE_BYTES + 16:
            raise SecretsCorrupt(f"{self.file} is not a secret store (size {len(blob)})")
        header, nonce = blob[:HEADER_BYTES], blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        if header[: len(MAGIC)] != MAGIC or header[len(MAGIC)] != VERSION:
            raise SecretsCorrupt(f"{self.file} is not a secret store baton wrote")
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
        return rules.decode(plain)

    def _write(self, key: bytes, secrets: dict[str, Secret]) -> None:
        header = MAGIC + bytes([VERSION]) + key_id(key)
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, rules.encode(secrets), header)
        atomic_write(self.file, header + nonce + sealed)

    # --- what callers ask ------------------------------------------------------------

    def all(self) -> dict[str, Secret]:
        """Every secret, values included (for the node; `list` shows no value)."""
        with self._locked():
            return self._read(self._key())

    def set(self, name: str, value: str, now: float) -> None:
        with self._locked():
            key = self._key()
            secrets = self._read(key)  # a store without its key: refused before a new key
            key = key or self._new_key()
            self._write(key, rules.with_secret(secrets, name, value, self.machine_id, now))
        log.info("secret %s set", name)

    def remove(self, name: str) -> None:
        with self._locked():
            key = self._key()
            secrets = self._read(key)
            if name not in secrets or key is None:
                raise NoSuchSecret(f"no secret named {name[:80]!r}")
            del secrets[name]
            self._write(key, secrets)
        log.info("secret %s removed", name)

    def values(self, names: tuple[str, ...]) -> dict[str, str]:
        """The values of ``names`` (those set): what an agent is given."""
        if not names:
            return {}
        secrets = self.all()
        return {n: secrets[n].value for n in names if n in secrets}
