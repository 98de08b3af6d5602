"""MasterKeys: where this machine's secret store keeps its master key, and how the key
is replaced (SecretStore; baton.stores.secret_store seals the file with it).

The key (32 random bytes, base64) lives in a slot: the OS keychain through ``keyring``
where one works (account ``<machine id>:secrets``), else ``machine/secrets.key``
(0600). ``machine/secrets-key.json`` records which, the key's id (the first 8 bytes of
its SHA-256), and the removed machines it was last rotated for: a keychain that cannot
be reached later is an error that says so, never a new key.

A rotation never leaves the store without the key that sealed it. The new key goes to
a second slot (``:next``, ``secrets.key.next``) and the record names it before the
store is sealed again; only then does it take the first slot. Whoever opens the store
next finishes or undoes a rotation a crash cut short, by the key id in the store
file's header (``settle``).

The key never leaves this machine: every member has its own, and secrets travel
between members sealed to each one's X25519 key (SecretSync).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from baton.core import safejson
from baton.core.errors import SecretsCorrupt, SecretsError, WrongSecretKey
from baton.stores.files import atomic_write, read_private
from baton.stores.home import HomePaths

log = logging.getLogger("baton.secrets")

KEY_BYTES = 32
KEYCHAIN_SERVICE = "baton"
SMALL_FILE_BYTES = 4096
MAIN, NEXT = "", ".next"  # the slots: the key in use, and one being brought in


class Keychain(Protocol):
    """What the store asks of an OS keychain (``keyring``'s backends have it)."""

    def get_password(self, service: str, username: str) -> str | None: ...

    def set_password(self, service: str, username: str, password: str) -> None: ...

    def delete_password(self, service: str, username: str) -> None: ...


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


def small(path: Path) -> bytes:
    """A key or a key record: small, or not what baton wrote."""
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
    next_id: str | None = None  # a rotation under way: the new key's id
    rotated_for: tuple[str, ...] = field(default=())  # removed machines, handled

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"where": self.where, "key_id": self.key_id}
        if self.next_id is not None:
            doc["next_id"] = self.next_id
        if self.rotated_for:
            doc["rotated_for"] = list(self.rotated_for)
        return json.dumps(doc).encode()


class MasterKeys:
    def __init__(self, paths: HomePaths, machine_id: str, keychain: Keychain | None) -> None:
        self.machine_id = machine_id
        self.keychain = keychain
        self.ref_file = paths.machine_dir / "secrets-key.json"
        self.key_file = paths.machine_dir / "secrets.key"

    # --- the record --------------------------------------------------------------------

    def ref(self) -> KeyRef | None:
        if not self.ref_file.exists():
            return None
        try:
            doc: Any = safejson.loads(small(self.ref_file))
            if not set(doc) <= {"where", "key_id", "next_id", "rotated_for"}:
                raise ValueError("unexpected fields")
            ref = KeyRef(
                doc["where"], doc["key_id"], doc.get("next_id"), tuple(doc.get("rotated_for", ()))
            )
            texts = (ref.key_id, ref.next_id or "", *ref.rotated_for)
            if ref.where not in ("keychain", "file") or not all(isinstance(t, str) for t in texts):
                raise ValueError("not a key reference")
        except (ValueError, KeyError, TypeError) as exc:
            raise SecretsCorrupt(f"{self.ref_file} does not read: {exc!r:.200}") from None
        return ref

    def _record(self, ref: KeyRef) -> KeyRef:
        atomic_write(self.ref_file, ref.to_json())
        return ref

    # --- the key -----------------------------------------------------------------------

    def current(self, sealed_with: Callable[[], bytes | None]) -> bytes | None:
        """The key in use, None before the first; a rotation a crash cut short is
        finished (the store is sealed with the new key) or undone first.
        ``sealed_with`` reads the id of the key the store file is sealed with."""
        ref = self.ref()
        if ref is None:
            return None
        if ref.next_id is not None:
            ref = self._settle(ref, sealed_with())
        key = self._get(ref.where, MAIN)
        if key_id(key).hex() != ref.key_id:
            raise WrongSecretKey(f"the master key in the {ref.where} is not the one recorded")
        return key

    def _settle(self, ref: KeyRef, sealed: bytes | None) -> KeyRef:
        if sealed is not None and sealed.hex() == ref.next_id:
            self._put(ref.where, MAIN, self._get(ref.where, NEXT))
            ref = self._record(replace(ref, key_id=ref.next_id, next_id=None))
            log.warning("finished a rotation of the secrets' master key a stop cut short")
        else:
            ref = self._record(replace(ref, next_id=None))
            log.warning("undid a rotation of the secrets' master key a stop cut short")
        self._drop(ref.where, NEXT)
        return ref

    def new(self) -> bytes:
        """The first key: in the keychain if it takes it, else in a 0600 file."""
        key = os.urandom(KEY_BYTES)
        where = "file"
        if self.keychain is not None:
            try:
                self._put("keychain", MAIN, key)
                where = "keychain"
            except SecretsError as exc:
                log.warning("%s; a 0600 file holds the key", exc.detail)
        if where == "file":
            self._put(where, MAIN, key)
        self._record(KeyRef(where, key_id(key).hex()))
        return key

    def rotate(self, reseal: Callable[[bytes], None], removed: tuple[str, ...]) -> str:
        """Bring in a new key: ``reseal`` seals the store with it between the steps
        that make a crash at any point recoverable. Records ``removed`` as handled;
        the new key's id."""
        ref = self.ref()
        if ref is None:
            raise SecretsError("no master key to rotate")
        key = os.urandom(KEY_BYTES)
        fresh = key_id(key).hex()
        self._put(ref.where, NEXT, key)
        ref = self._record(replace(ref, next_id=fresh))
        reseal(key)
        self._put(ref.where, MAIN, key)
        rotated = tuple(sorted({*ref.rotated_for, *removed}))
        self._record(replace(ref, key_id=fresh, next_id=None, rotated_for=rotated))
        self._drop(ref.where, NEXT)
        return fresh

    def handled(self, removed: tuple[str, ...]) -> None:
        """Record ``removed`` as handled without a key to rotate (no store yet)."""
        ref = self.ref()
        if ref is not None:
            self._record(replace(ref, rotated_for=tuple(sorted({*ref.rotated_for, *removed}))))

    def forget(self) -> list[str]:
        """Delete the key (both slots) and its record; what was deleted."""
        try:
            ref = self.ref()
        except SecretsError:  # a record that does not read: the files go all the same
            ref = None
        gone = []
        for slot in (MAIN, NEXT):
            if ref is not None and ref.where == "keychain":
                self._drop("keychain", slot)
            if self._file(slot).exists():
                self._drop("file", slot)
                gone.append(str(self._file(slot)))
        if ref is not None and ref.where == "keychain":
            gone.append(f"the OS keychain's {self._account(MAIN)}")
        with contextlib.suppress(FileNotFoundError):
            self.ref_file.unlink()
            gone.append(str(self.ref_file))
        return gone

    # --- slots -------------------------------------------------------------------------

    def _account(self, slot: str) -> str:
        return f"{self.machine_id}:secrets{slot.replace('.', ':')}"

    def _file(self, slot: str) -> Path:
        return self.key_file.with_name(self.key_file.name + slot)

    def _get(self, where: str, slot: str) -> bytes:
        if where == "keychain":
            if self.keychain is None:
                raise SecretsError("the master key is in the OS keychain, and none is reachable")
            try:
                text = self.keychain.get_password(KEYCHAIN_SERVICE, self._account(slot))
            except Exception as exc:  # keyring's errors are many and backend-specific
                raise SecretsError(
                    f"the OS keychain did not answer: {type(exc).__name__}"
                ) from None
            if text is None:
                raise SecretsError("the OS keychain has no baton master key for this machine")
        else:
            try:
                text = small(self._file(slot)).decode("ascii")
            except UnicodeDecodeError:
                raise SecretsCorrupt(f"{self._file(slot)} does not read") from None
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SecretsCorrupt(f"the master key in the {where} does not read") from None
        if len(key) != KEY_BYTES:
            raise SecretsCorrupt(f"the master key in the {where} is not {KEY_BYTES} bytes")
        return key

    def _put(self, where: str, slot: str, key: bytes) -> None:
        text = base64.b64encode(key).decode()
        if where == "file":
            atomic_write(self._file(slot), text.encode())
            return
        if self.keychain is None:
            raise SecretsError("the master key is in the OS keychain, and none is reachable")
        try:
            self.keychain.set_password(KEYCHAIN_SERVICE, self._account(slot), text)
        except Exception as exc:
            raise SecretsError(f"the OS keychain refused the key ({type(exc).__name__})") from None

    def _drop(self, where: str, slot: str) -> None:
        if where == "file":
            with contextlib.suppress(FileNotFoundError):
                self._file(slot).unlink()
            return
        if self.keychain is not None:
            with contextlib.suppress(Exception):  # gone already, or the keychain is away
                self.keychain.delete_password(KEYCHAIN_SERVICE, self._account(slot))
