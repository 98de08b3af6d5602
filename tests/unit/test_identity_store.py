"""The machine identity on disk: atomic creation, strict and read-only loading."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import nacl.signing
import pytest

from baton.core.errors import HomeError, IdentityError, IdentityExists, InvalidNickname
from baton.core.identity import derive_machine_id
from baton.stores import identity_store
from baton.stores.home import HomePaths
from baton.stores.identity_store import (
    MachineIdentity,
    create_home,
    load_identity,
    load_public_identity,
    read_api_token,
)

NOW = 1_700_000_000.0


def counting_rng(start: int = 0) -> Callable[[int], bytes]:
    """Deterministic randomness: each call returns n bytes of the next counter value."""
    counter = iter(range(start, start + 1000))

    def rng(n: int) -> bytes:
        return bytes([next(counter)]) * n

    return rng


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every entry under root: relative path -> (mode, sha256 of content or 'dir')."""
    out: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(root))] = (stat.S_IMODE(st.st_mode), digest)
    out["."] = (stat.S_IMODE(root.lstat().st_mode), "dir")
    return out


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    create_home(h, "laptop", rng=counting_rng(), now=NOW)
    return h


# --- create_home --------------------------------------------------------------


def test_layout_and_modes(tmp_path: Path) -> None:
    h = tmp_path / "home"
    ident = create_home(h, "laptop", rng=counting_rng(), now=NOW)
    p = HomePaths(h)
    for d in (p.root, p.machine_dir, p.data_dir, p.tail_dir, p.logs_dir, p.run_dir, p.state_dir):
        assert d.is_dir(), d
        assert mode(d) == 0o700, d
    for f in (p.signing_key, p.encryption_key, p.api_token, p.config):
        assert f.is_file(), f
        assert mode(f) == 0o600, f
    assert mode(p.identity) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["home"]  # no staging left behind
    assert p.signing_key.read_bytes() == base64.b64encode(bytes([0]) * 32) + b"\n"
    assert p.encryption_key.read_bytes() == base64.b64encode(bytes([1]) * 32) + b"\n"
    assert p.api_token.read_bytes() == base64.urlsafe_b64encode(bytes([2]) * 32) + b"\n"
    assert p.config.read_text().startswith("#")
    card = json.loads(p.identity.read_text())
    assert card["format"] == 1
    assert card["created_at"] == "2023-11-14T22:13:20Z"
    assert card["machine_id"] == ident.machine_id
    assert card["nickname"] == "laptop"


def test_deterministic_machine_id_with_injected_rng(tmp_path: Path) -> None:
    a = create_home(tmp_path / "a", "laptop", rng=counting_rng(), now=NOW)
    b = create_home(tmp_path / "b", "mini", rng=counting_rng(), now=NOW)
    c = create_home(tmp_path / "c", "mini", rng=counting_rng(start=7), now=NOW)
    expected = nacl.signing.SigningKey(bytes([0]) * 32).verify_key.encode()
    assert a.machine_id == b.machine_id == derive_machine_id(expected)
    assert c.machine_id != a.machine_id


def test_returned_identity_matches_loaded(tmp_path: Path) -> None:
    created = create_home(tmp_path / "h", "laptop", config_text=b"x = 1\n", now=NOW)
    loaded = load_identity(tmp_path / "h")
    assert loaded == created
    assert loaded.curve_secret == created.curve_secret
    assert len(loaded.curve_secret) == 32 and len(loaded.curve_public) == 32
    assert loaded.curve_public == created.public.encryption_public
    assert HomePaths(tmp_path / "h").config.read_bytes() == b"x = 1\n"


def test_repr_hides_secrets(home: Path) -> None:
    ident = load_identity(home)
    text = repr(ident) + str(ident)
    assert ident.machine_id in text
    for secret in (ident.curve_secret, bytes(ident.signing_key.encode())):
        assert secret.hex() not in text
        assert base64.b64encode(secret).decode() not in text
        assert repr(secret) not in text


def test_refuses_existing_identity_and_changes_nothing(home: Path) -> None:
    before = snapshot(home)
    mid = load_identity(home).machine_id
    with pytest.raises(IdentityExists) as info:
        create_home(home, "other", rng=counting_rng(start=50), now=NOW)
    assert mid in info.value.detail
    assert snapshot(home) == before
    assert sorted(os.listdir(home.parent)) == ["home"]


def test_refuses_non_empty_home_without_identity(tmp_path: Path) -> None:
    h = tmp_path / "home"
    h.mkdir()
    (h / "notes.txt").write_text("mine")
    before = snapshot(h)
    with pytest.raises(HomeError) as info:
        create_home(h, "laptop", now=NOW)
    assert not isinstance(info.value, IdentityExists)
    assert str(h) in info.value.detail and "not empty" in info.value.detail
    assert snapshot(h) == before
    assert sorted(os.listdir(tmp_path)) == ["home"]


def test_refuses_home_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "home"
    f.write_text("x")
    with pytest.raises(HomeError, match="not a directory"):
        create_home(f, "laptop", now=NOW)
    assert f.read_text() == "x"


def test_accepts_existing_empty_dir(tmp_path: Path) -> None:
    h = tmp_path / "home"
    h.mkdir(mode=0o755)
    ident = create_home(h, "laptop", now=NOW)
    assert load_identity(h).machine_id == ident.machine_id
    assert mode(h) == 0o700
    assert sorted(os.listdir(tmp_path)) == ["home"]


def test_creates_missing_parents(tmp_path: Path) -> None:
    h = tmp_path / "a" / "b" / "home"
    create_home(h, "laptop", now=NOW)
    assert load_identity(h).nickname == "laptop"


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failure_midway_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    (tmp_path / "neighbour").write_text("keep")
    real_write = identity_store.atomic_write

    def failing_write(path: Path, data: bytes, mode: int = 0o600) -> None:
        if path.name == "identity.json":
            raise exc
        real_write(path, data, mode)

    monkeypatch.setattr(identity_store, "atomic_write", failing_write)
    before = snapshot(tmp_path)
    with pytest.raises(type(exc)):
        create_home(tmp_path / "home", "laptop", now=NOW)
    assert snapshot(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["neighbour"]


def test_failure_midway_keeps_existing_empty_home_and_removes_new_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o750)
    os.chmod(empty, 0o750)

    def boom(path: Path, data: bytes, mode: int = 0o600) -> None:
        raise OSError("boom")

    monkeypatch.setattr(identity_store, "atomic_write", boom)
    before = snapshot(tmp_path)
    with pytest.raises(OSError, match="boom"):
        create_home(empty, "laptop", now=NOW)
    with pytest.raises(OSError, match="boom"):
        create_home(tmp_path / "new" / "deeper" / "home", "laptop", now=NOW)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("bad", ["", "Laptop", "-x", "x-", "a b", "x" * 33])
def test_bad_nickname_rejected_before_disk(tmp_path: Path, bad: str) -> None:
    calls: list[int] = []

    def rng(n: int) -> bytes:
        calls.append(n)
        return b"\0" * n

    with pytest.raises(InvalidNickname):
        create_home(tmp_path / "x" / "home", bad, rng=rng, now=NOW)
    assert os.listdir(tmp_path) == []
    assert calls == []


# --- load_identity: refusals leave the disk untouched ----------------------------


def _assert_refused(
    home: Path, error: type[Exception], names: str, load: Callable[[Path], object] = load_identity
) -> None:
    before = snapshot(home)
    with pytest.raises(error) as info:
        load(home)
    assert names in str(info.value)
    assert snapshot(home) == before


def test_load_missing_home(tmp_path: Path) -> None:
    with pytest.raises(HomeError, match=r"no identity in .*baton init --name NICK"):
        load_identity(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_load_home_without_identity(tmp_path: Path) -> None:
    (tmp_path / "machine").mkdir()
    _assert_refused(tmp_path, HomeError, str(tmp_path))


def test_load_missing_key_file(home: Path) -> None:
    HomePaths(home).encryption_key.unlink()
    _assert_refused(home, IdentityError, "encryption.key")


@pytest.mark.parametrize(
    "content",
    [b"", b"\n", b"!!!not base64!!!\n", base64.b64encode(b"x" * 31) + b"\n", b"\xff\xfe\n"],
    ids=["empty", "blank", "garbage", "short", "binary"],
)
@pytest.mark.parametrize("which", ["signing_key", "encryption_key"])
def test_load_corrupt_key_file(home: Path, which: str, content: bytes) -> None:
    path: Path = getattr(HomePaths(home), which)
    path.write_bytes(content)
    _assert_refused(home, IdentityError, path.name)


def test_load_mismatched_signing_key(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    create_home(other, "mini", rng=counting_rng(start=9), now=NOW)
    HomePaths(home).signing_key.write_bytes(HomePaths(other).signing_key.read_bytes())
    _assert_refused(home, IdentityError, "signing.key does not match identity.json")


def test_load_mismatched_encryption_key(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    create_home(other, "mini", rng=counting_rng(start=9), now=NOW)
    HomePaths(home).encryption_key.write_bytes(HomePaths(other).encryption_key.read_bytes())
    _assert_refused(home, IdentityError, "encryption.key does not match identity.json")


@pytest.mark.parametrize("which", ["signing_key", "encryption_key", "api_token"])
def test_load_refuses_readable_secret(home: Path, which: str) -> None:
    path: Path = getattr(HomePaths(home), which)
    os.chmod(path, 0o644)
    _assert_refused(home, IdentityError, str(path))


@pytest.mark.parametrize("which", ["root", "machine_dir"])
def test_load_refuses_writable_dir(home: Path, which: str) -> None:
    path: Path = getattr(HomePaths(home), which)
    os.chmod(path, 0o777)
    _assert_refused(home, HomeError, str(path))


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b"\xff",
        b'{"format": 1}',
        b'{"format": 2, "created_at": "x"}',
    ],
)
def test_load_corrupt_identity_json(home: Path, content: bytes) -> None:
    HomePaths(home).identity.write_bytes(content)
    _assert_refused(home, IdentityError, "identity.json")


def test_load_identity_json_with_bad_field(home: Path) -> None:
    path = HomePaths(home).identity
    card = json.loads(path.read_text())
    card["nickname"] = "Not Valid"
    path.write_text(json.dumps(card))
    _assert_refused(home, IdentityError, "identity.json")
    _assert_refused(home, IdentityError, "nickname", load=load_public_identity)


def test_load_identity_json_with_unknown_field(home: Path) -> None:
    path = HomePaths(home).identity
    card = json.loads(path.read_text())
    card["role"] = "holder"
    path.write_text(json.dumps(card))
    _assert_refused(home, IdentityError, "role")


def test_load_public_identity(home: Path) -> None:
    HomePaths(home).signing_key.unlink()  # the public card alone is enough
    pub = load_public_identity(home)
    assert pub.nickname == "laptop"
    assert pub.machine_id.startswith("m_")


# --- read_api_token -------------------------------------------------------------


def test_read_api_token(home: Path) -> None:
    token = read_api_token(home)
    assert token == base64.urlsafe_b64encode(bytes([2]) * 32).decode()


def test_api_token_missing(home: Path) -> None:
    token_path = HomePaths(home).api_token
    token_path.unlink()
    _assert_refused(home, IdentityError, "api-token", load=read_api_token)


def test_api_token_empty(home: Path) -> None:
    token_path = HomePaths(home).api_token
    token_path.write_bytes(b"\n")
    _assert_refused(home, IdentityError, "api-token", load=read_api_token)


def test_api_token_readable_by_others(home: Path) -> None:
    token_path = HomePaths(home).api_token
    os.chmod(token_path, 0o640)
    _assert_refused(home, IdentityError, "chmod 600", load=read_api_token)


def test_api_token_missing_home(tmp_path: Path) -> None:
    with pytest.raises(HomeError, match="baton init"):
        read_api_token(tmp_path / "nowhere")


def test_machine_identity_is_a_frozen_dataclass(home: Path) -> None:
    ident: MachineIdentity = load_identity(home)
    with pytest.raises(AttributeError):
        ident.public = ident.public  # type: ignore[misc]
