"""The machine identity on disk: create a home atomically, load it back safely.

Invariants:
- create_home is all or nothing. Everything is built in a 0700 staging
  directory next to the home and moved into place with one rename(2), which
  only replaces a missing or empty directory. On any failure (KeyboardInterrupt
  included) the staging directory and any parents we created are removed, and
  the home is exactly as it was.
- create_home never overwrites an identity: IdentityExists if one is there,
  HomeError if the home holds anything else.
- Randomness comes from the ``rng`` argument, drawn before the disk is touched,
  in this order: signing seed, encryption key, api token (32 bytes each).
- Secret files are 0600 and the home and machine/ are 0700 from the start.
- Loading never writes. Unsafe permissions, corrupt or inconsistent files raise
  HomeError/IdentityError naming the file; keys derived from the private key
  files must match identity.json.
- A MachineIdentity never shows its secrets in its repr.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.public
import nacl.signing

from baton.core import safejson
from baton.core.errors import HomeError, IdentityError, IdentityExists, InvalidCard
from baton.core.identity import KEY_BYTES, PublicIdentity, validate_nickname
from baton.stores.files import (
    PRIVATE_DIR,
    atomic_write,
    check_private_dir,
    check_private_file,
    fsync_dir,
)
from baton.stores.home import HomePaths

IDENTITY_FORMAT = 1
PUBLIC_FILE = 0o644
_MAX_SMALL_FILE = 64 * 1024  # key, token and identity files are tiny; refuse anything huge

DEFAULT_CONFIG = b"""\
# baton configuration, written by `baton init`.
# Every knob has a default (docs/DESIGN.md, "Settings"); set only what you change here.
# Precedence: defaults, then this file, then BATON_* environment, then flags.
"""


@dataclass(frozen=True, repr=False)
class MachineIdentity:
    """This machine's public identity together with its two private keys."""

    public: PublicIdentity
    signing_key: nacl.signing.SigningKey = field(compare=False)
    encryption_key: nacl.public.PrivateKey = field(compare=False)

    @property
    def machine_id(self) -> str:
        return self.public.machine_id

    @property
    def nickname(self) -> str:
        return self.public.nickname

    @property
    def curve_secret(self) -> bytes:
        """Raw 32-byte X25519 private key (zmq CURVE secret key)."""
        return bytes(self.encryption_key.encode())

    @property
    def curve_public(self) -> bytes:
        """Raw 32-byte X25519 public key (zmq CURVE public key)."""
        return bytes(self.encryption_key.public_key.encode())

    def __repr__(self) -> str:
        return f"MachineIdentity(machine_id={self.machine_id!r}, nickname={self.nickname!r})"


def create_home(
    home: Path,
    nickname: str,
    config_text: bytes | None = None,
    rng: Callable[[int], bytes] = os.urandom,
    now: float | None = None,
) -> MachineIdentity:
    """Create a new home holding a fresh identity (docs/DESIGN.md, "Identity and the
    home"), atomically.

    Raises InvalidNickname (before any disk access), IdentityExists if the home
    already has an identity, HomeError if it exists and is not an empty directory.
    """
    validate_nickname(nickname)
    seed, enc_secret, token = _draw(rng), _draw(rng), _draw(rng)
    signing_key = nacl.signing.SigningKey(seed)
    encryption_key = nacl.public.PrivateKey(enc_secret)
    public = PublicIdentity.from_keys(
        nickname, bytes(signing_key.verify_key.encode()), bytes(encryption_key.public_key.encode())
    )
    created_at = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    card: dict[str, Any] = {
        **public.to_dict(),
        "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "format": IDENTITY_FORMAT,
    }
    card_json = (json.dumps(card, indent=2, sort_keys=True) + "\n").encode("utf-8")

    home = Path(os.path.abspath(home))
    if home.is_symlink():  # build next to the target so rename stays on one filesystem
        home = home.resolve()
    _refuse_occupied(home)
    created_parents: list[Path] = []
    staging: Path | None = None
    try:
        _make_parents(home.parent, created_parents)
        staging = Path(tempfile.mkdtemp(prefix=f".{home.name}.init-", dir=home.parent))
        os.chmod(staging, PRIVATE_DIR)
        paths = HomePaths(staging)
        for d in (
            paths.machine_dir,
            paths.data_dir,
            paths.tail_dir,
            paths.logs_dir,
            paths.run_dir,
            paths.state_dir,
        ):
            _mkdir_private(d)
        atomic_write(paths.signing_key, base64.b64encode(seed) + b"\n")
        atomic_write(paths.encryption_key, base64.b64encode(enc_secret) + b"\n")
        atomic_write(paths.api_token, base64.urlsafe_b64encode(token) + b"\n")
        atomic_write(paths.identity, card_json, mode=PUBLIC_FILE)
        atomic_write(paths.config, DEFAULT_CONFIG if config_text is None else config_text)
        fsync_dir(staging)
        _rename_into_place(staging, home)
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for parent in reversed(created_parents):
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    fsync_dir(home.parent)
    return MachineIdentity(public, signing_key, encryption_key)


def load_identity(home: Path) -> MachineIdentity:
    """Load and verify the identity in ``home``; never modifies anything on disk.

    Raises HomeError if there is no identity or a directory is unsafe, and
    IdentityError (naming the file) for unsafe, corrupt or mismatched files.
    """
    paths = _checked_paths(home)
    for secret in (paths.signing_key, paths.encryption_key, paths.api_token):
        _check_secret_file(secret)
    signing_key = nacl.signing.SigningKey(_read_key(paths.signing_key))
    encryption_key = nacl.public.PrivateKey(_read_key(paths.encryption_key))
    public = _read_public(paths.identity)
    if bytes(signing_key.verify_key.encode()) != public.signing_public:
        raise IdentityError(f"{paths.signing_key}: signing.key does not match identity.json")
    if bytes(encryption_key.public_key.encode()) != public.encryption_public:
        raise IdentityError(f"{paths.encryption_key}: encryption.key does not match identity.json")
    return MachineIdentity(public, signing_key, encryption_key)


def load_public_identity(home: Path) -> PublicIdentity:
    """Read only machine/identity.json (no private keys); same checks as load_identity."""
    return _read_public(_checked_paths(home).identity)


def read_api_token(home: Path) -> str:
    """Return the local API bearer token; IdentityError if missing, empty or unsafe."""
    paths = _checked_paths(home, need_identity=False)
    _check_secret_file(paths.api_token)
    raw = _read_small(paths.api_token)
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise IdentityError(f"{paths.api_token}: not ascii text") from None
    if not token or any(c.isspace() for c in token):
        raise IdentityError(f"{paths.api_token}: is empty or malformed; run `baton init` again")
    return token


# --- helpers ---------------------------------------------------------------


def _draw(rng: Callable[[int], bytes]) -> bytes:
    raw = rng(KEY_BYTES)
    if type(raw) is not bytes or len(raw) != KEY_BYTES:
        raise ValueError(f"rng({KEY_BYTES}) must return {KEY_BYTES} bytes")
    return raw


def _mkdir_private(path: Path) -> None:
    path.mkdir(mode=PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)  # the umask may have narrowed it


def _refuse_occupied(home: Path) -> None:
    """Raise unless ``home`` is missing or an empty directory."""
    if not os.path.lexists(home):
        return
    if not home.is_dir():
        raise HomeError(f"{home} exists and is not a directory")
    identity = HomePaths(home).identity
    if os.path.lexists(identity):
        raise IdentityExists(
            f"{home} already holds the identity of {_machine_id_in(identity)}; "
            "init never overwrites an identity"
        )
    if any(home.iterdir()):
        raise HomeError(f"{home} is not empty and holds no identity; choose another --home")


def _machine_id_in(identity: Path) -> str:
    try:
        data = safejson.loads(_read_small(identity))
        value = data["machine_id"]
        return value if isinstance(value, str) else "an unreadable machine_id"
    except (OSError, ValueError, KeyError, TypeError, IdentityError):
        return "a machine (identity.json unreadable)"


def _make_parents(parent: Path, created: list[Path]) -> None:
    """Create missing parents, outermost first, recording each in ``created``."""
    missing: list[Path] = []
    p = parent
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=PRIVATE_DIR)
        created.append(d)


def _rename_into_place(staging: Path, home: Path) -> None:
    try:
        os.rename(staging, home)
    except OSError as exc:  # someone filled or created the home since we checked
        _refuse_occupied(home)
        raise HomeError(f"could not move the new home into {home}: {exc.strerror}") from exc


def _checked_paths(home: Path, need_identity: bool = True) -> HomePaths:
    paths = HomePaths(Path(home))
    marker = paths.identity if need_identity else paths.root
    if not paths.root.is_dir() or not marker.exists():
        raise HomeError(f"no identity in {paths.root}; run `baton init --name NICK`")
    check_private_dir(paths.root)
    check_private_dir(paths.machine_dir)
    return paths


def _check_secret_file(path: Path) -> None:
    try:
        check_private_file(path)
    except HomeError as exc:
        raise IdentityError(exc.detail) from None


def _read_small(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_SMALL_FILE + 1)
    except OSError as exc:
        raise IdentityError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(data) > _MAX_SMALL_FILE:
        raise IdentityError(f"{path}: too large to be a baton identity file")
    return data


def _read_key(path: Path) -> bytes:
    text = _read_small(path).strip()
    if not text:
        raise IdentityError(f"{path}: is empty")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise IdentityError(f"{path}: is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise IdentityError(f"{path}: holds {len(raw)} bytes, expected a {KEY_BYTES}-byte key")
    return raw


def _read_public(path: Path) -> PublicIdentity:
    try:
        data = safejson.loads(_read_small(path))
    except (ValueError, UnicodeDecodeError):
        raise IdentityError(f"{path}: is not valid JSON") from None
    if not isinstance(data, dict):
        raise IdentityError(f"{path}: expected a JSON object")
    if data.get("format") != IDENTITY_FORMAT or type(data.get("format")) is not int:
        raise IdentityError(f"{path}: unknown format {data.get('format')!r}")
    if type(data.get("created_at")) is not str:
        raise IdentityError(f"{path}: created_at: expected a string")
    try:
        return PublicIdentity.from_dict(data, extra_ok=("created_at", "format"))
    except InvalidCard as exc:
        raise IdentityError(f"{path}: {exc.detail}") from None
