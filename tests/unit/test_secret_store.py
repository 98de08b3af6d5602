"""SecretStore on disk (AES-256-GCM under a master key in a keychain or a 0600 file):
what is set comes back, nothing readable is on disk, and a damaged, foreign or
wrongly keyed store is a named error that changes nothing."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from baton.core.errors import (
    BadSecret,
    BatonError,
    NoSuchSecret,
    SecretsCorrupt,
    SecretsError,
    WrongSecretKey,
)
from baton.core.secret_rules import MAX_SECRETS, MAX_VALUE_BYTES, Secret
from baton.stores import secret_store
from baton.stores.home import HomePaths
from baton.stores.identity_store import create_home
from baton.stores.secret_keys import MasterKeys
from baton.stores.secret_store import SecretStore

VALUE = "sk-live-0123456789abcdef"
ME = "m_aaaaaaaaaaaaaaaa"


class DictKeychain:
    """A keychain in memory, as keyring's backends behave (None for a missing entry)."""

    def __init__(self, refuse: bool = False) -> None:
        self.items: dict[tuple[str, str], str] = {}
        self.refuse = refuse

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.refuse:
            raise RuntimeError("locked")
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.items[(service, username)]


@pytest.fixture
def paths(tmp_path: Path) -> HomePaths:
    create_home(tmp_path / "home", "laptop")
    return HomePaths(tmp_path / "home")


def store(paths: HomePaths, keychain: DictKeychain | None = None) -> SecretStore:
    return SecretStore(paths, ME, keychain)


def test_what_is_set_comes_back_and_nothing_readable_is_on_disk(paths: HomePaths) -> None:
    s = store(paths)
    s.set("API_KEY", VALUE, 1000.0)
    s.set("OTHER", "two", 1001.0)
    assert s.all()["API_KEY"] == Secret(VALUE, ME, 1000.0)
    assert store(paths).values(("API_KEY", "MISSING")) == {"API_KEY": VALUE}
    for path in (s.file, s.key_file, s.ref_file):
        assert path.stat().st_mode & 0o777 == 0o600
    everything = b"".join(p.read_bytes() for p in paths.root.rglob("*") if p.is_file())
    assert VALUE.encode() not in everything and b"API_KEY" not in s.file.read_bytes()
    s.remove("API_KEY", 1002.0)
    assert set(s.all()) == {"OTHER"}
    with pytest.raises(NoSuchSecret):
        s.remove("API_KEY", 1003.0)


def test_every_write_is_sealed_afresh(paths: HomePaths) -> None:
    s = store(paths)
    s.set("A", "x", 1.0)
    first = s.file.read_bytes()
    s.set("A", "x", 1.0)
    assert s.file.read_bytes() != first  # a new nonce


def test_a_secret_never_shows_its_value(paths: HomePaths) -> None:
    s = store(paths)
    s.set("API_KEY", VALUE, 1.0)
    assert VALUE not in repr(s.all()) and VALUE not in str(s.all())


@pytest.mark.parametrize("name", ["", "lower", "1ABC", "A-B", "BATON_TOKEN", "A" * 65, "É"])
def test_bad_names_are_refused(paths: HomePaths, name: str) -> None:
    with pytest.raises(BadSecret):
        store(paths).set(name, "x", 1.0)
    assert not store(paths).file.exists()


@pytest.mark.parametrize("value", ["", "a\0b", "x" * (MAX_VALUE_BYTES + 1), "\udcff"])
def test_bad_values_are_refused(paths: HomePaths, value: str) -> None:
    with pytest.raises(BadSecret):
        store(paths).set("NAME", value, 1.0)


def test_a_store_holds_a_bounded_number_of_secrets(paths: HomePaths) -> None:
    s = store(paths)
    for i in range(MAX_SECRETS):
        s.set(f"S{i}", "x", 1.0)
    with pytest.raises(BadSecret, match="at most"):
        s.set("ONE_MORE", "x", 1.0)
    assert len(s.all()) == MAX_SECRETS


def damaged(paths: HomePaths, how: str) -> bytes:
    s = store(paths)
    s.set("API_KEY", VALUE, 1.0)
    blob = bytearray(s.file.read_bytes())
    if how == "flipped":
        blob[-5] ^= 1
    elif how == "header":
        blob[len(b"BATONSEC") + 3] ^= 1  # the key id: refused as a wrong key
    elif how == "magic":
        blob[0:8] = b"NOTBATON"
    elif how == "truncated":
        blob = blob[:20]
    s.file.write_bytes(bytes(blob))
    return bytes(blob)


@pytest.mark.parametrize(
    ("how", "error"),
    [
        ("flipped", SecretsCorrupt),
        ("header", WrongSecretKey),
        ("magic", SecretsCorrupt),
        ("truncated", SecretsCorrupt),
    ],
)
def test_a_damaged_store_is_a_named_error_and_is_never_written_over(
    paths: HomePaths, how: str, error: type[BatonError]
) -> None:
    before = damaged(paths, how)
    s = store(paths)
    with pytest.raises(error):
        s.all()
    with pytest.raises(error):
        s.set("NEW", "x", 2.0)
    with pytest.raises(error):
        s.remove("API_KEY", 2.0)
    assert s.file.read_bytes() == before


def test_a_store_sealed_under_another_key_is_refused_untouched(paths: HomePaths) -> None:
    s = store(paths)
    s.set("API_KEY", VALUE, 1.0)
    sealed = s.file.read_bytes()
    s.key_file.unlink()
    s.ref_file.unlink()
    with pytest.raises(SecretsError, match="no master key"):
        s.all()
    with pytest.raises(SecretsError, match="no master key"):
        s.set("NEW", "x", 2.0)  # no new key in its place, and the store is not replaced
    assert s.file.read_bytes() == sealed
    assert not s.key_file.exists() and not s.ref_file.exists()


def test_a_changed_key_file_is_noticed(paths: HomePaths) -> None:
    s = store(paths)
    s.set("API_KEY", VALUE, 1.0)
    s.key_file.write_text("A" * 43 + "=")  # 32 bytes, another key
    with pytest.raises(WrongSecretKey, match="not the one recorded"):
        s.all()


def test_a_store_readable_by_others_is_refused(paths: HomePaths) -> None:
    s = store(paths)
    s.set("API_KEY", VALUE, 1.0)
    s.file.chmod(0o644)
    with pytest.raises(BatonError):
        s.all()


def test_the_master_key_goes_to_the_keychain_where_there_is_one(paths: HomePaths) -> None:
    keychain = DictKeychain()
    s = store(paths, keychain)
    s.set("API_KEY", VALUE, 1.0)
    assert not s.key_file.exists() and len(keychain.items) == 1
    assert store(paths, keychain).all()["API_KEY"].value == VALUE
    with pytest.raises(SecretsError, match="none is reachable"):
        store(paths, None).all()  # never a new key in its place
    keychain.items.clear()
    with pytest.raises(SecretsError, match="no baton master key"):
        store(paths, keychain).all()


def test_a_keychain_that_refuses_leaves_the_key_in_a_private_file(paths: HomePaths) -> None:
    s = store(paths, DictKeychain(refuse=True))
    s.set("API_KEY", VALUE, 1.0)
    assert s.key_file.stat().st_mode & 0o777 == 0o600
    assert store(paths).all()["API_KEY"].value == VALUE


def test_changes_from_two_writers_at_once_are_all_kept(paths: HomePaths) -> None:
    store(paths).set("FIRST", "x", 1.0)  # the key exists before the race

    def writer(prefix: str) -> None:
        s = store(paths)
        for i in range(20):
            s.set(f"{prefix}{i}", "v", 1.0)

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert len(store(paths).all()) == 41


@pytest.mark.parametrize("how", ["fifo", "deep", "not-utf8-key", "huge-ref"])
def test_damaged_key_files_are_named_errors_never_a_hang(paths: HomePaths, how: str) -> None:
    s = store(paths)
    s.set("API_KEY", VALUE, 1.0)
    if how == "fifo":
        s.ref_file.unlink()
        os.mkfifo(s.ref_file, 0o600)
    elif how == "deep":
        s.ref_file.write_text("[" * 200_000)
    elif how == "not-utf8-key":
        s.key_file.write_bytes(b"\xff" * 44)
    else:
        s.ref_file.write_text(" " * 10_000)
    with pytest.raises(BatonError):
        store(paths).all()


def test_a_key_file_with_a_trailing_newline_still_reads(paths: HomePaths) -> None:
    s = store(paths)
    s.set("API_KEY", VALUE, 1.0)
    s.key_file.write_text(s.key_file.read_text() + "\n")  # an editor added it
    assert store(paths).all()["API_KEY"].value == VALUE


# --- between machines: versions, removals, rotation ------------------------------------

OTHER = "m_bbbbbbbbbbbbbbbb"


def test_a_removal_is_kept_as_a_version_and_a_newer_one_wins(paths: HomePaths) -> None:
    s = store(paths)
    s.set("API_KEY", VALUE, 100.0)
    s.remove("API_KEY", 50.0)  # a clock behind: still dated after what it replaced
    gone = s.entries()["API_KEY"]
    assert gone.deleted and gone.set_at > 100.0 and "API_KEY" not in s.all()
    assert s.take("API_KEY", Secret("older", OTHER, 100.0), now=200.0) is False
    assert s.take("API_KEY", Secret("newer", OTHER, 150.0), now=200.0) is True
    assert s.all()["API_KEY"] == Secret("newer", OTHER, 150.0)
    assert s.take("API_KEY", Secret("", OTHER, 160.0, deleted=True), now=200.0) is True
    assert "API_KEY" not in s.all()


def test_a_version_dated_far_ahead_of_this_clock_is_refused(paths: HomePaths) -> None:
    s = store(paths)
    s.set("API_KEY", VALUE, 100.0)
    with pytest.raises(BadSecret, match="ahead"):
        s.take("API_KEY", Secret("x", OTHER, 100.0 + 7200), now=100.0)
    assert s.all()["API_KEY"].value == VALUE


def test_a_rotation_reseals_under_a_new_key_and_the_old_is_gone(paths: HomePaths) -> None:
    s = store(paths)
    s.set("API_KEY", VALUE, 1.0)
    old_key, old_blob = s.key_file.read_text(), s.file.read_bytes()
    fresh = s.rotate((OTHER,))
    assert fresh is not None and s.key_file.read_text() != old_key
    assert s.file.read_bytes()[9:17].hex() == fresh != old_blob[9:17].hex()
    assert store(paths).all()["API_KEY"].value == VALUE
    assert s.rotated_for() == (OTHER,)
    assert not s.key_file.with_name("secrets.key.next").exists()


def test_a_rotation_in_the_keychain_leaves_one_key_there(paths: HomePaths) -> None:
    keychain = DictKeychain()
    s = store(paths, keychain)
    s.set("API_KEY", VALUE, 1.0)
    before = dict(keychain.items)
    s.rotate()
    assert len(keychain.items) == 1 and keychain.items != before
    assert store(paths, keychain).all()["API_KEY"].value == VALUE


@pytest.mark.parametrize("crash_at", ["reseal", "main slot", "record"])
def test_a_rotation_a_crash_cuts_short_is_finished_or_undone_never_lost(
    paths: HomePaths, crash_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = store(paths)
    s.set("API_KEY", VALUE, 1.0)
    put, record, write = MasterKeys._put, MasterKeys._record, SecretStore._write

    class Crash(Exception):
        pass

    def crash_put(self: MasterKeys, where: str, slot: str, key: bytes) -> None:
        if crash_at == "main slot" and slot == "":
            raise Crash
        put(self, where, slot, key)

    def crash_record(self: MasterKeys, ref: object) -> object:
        if crash_at == "record" and getattr(ref, "next_id", 1) is None:
            raise Crash
        return record(self, ref)  # type: ignore[arg-type]

    def crash_write(self: SecretStore, key: bytes, secrets: object) -> None:
        if crash_at == "reseal":
            raise Crash
        write(self, key, secrets)  # type: ignore[arg-type]

    monkeypatch.setattr(MasterKeys, "_put", crash_put)
    monkeypatch.setattr(MasterKeys, "_record", crash_record)
    monkeypatch.setattr(SecretStore, "_write", crash_write)
    with pytest.raises(Crash):
        s.rotate()
    monkeypatch.undo()
    assert store(paths).all()["API_KEY"].value == VALUE  # settled on the next open
    ref = store(paths).keys.ref()
    assert ref is not None and ref.next_id is None
    assert ref.key_id == store(paths).file.read_bytes()[9:17].hex()
    store(paths).set("OTHER", "x", 2.0)  # and it goes on
    assert set(store(paths).all()) == {"API_KEY", "OTHER"}


def test_tombstones_are_bounded_the_oldest_forgotten(
    paths: HomePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secret_store.rules, "MAX_TOMBSTONES", 3)
    s = store(paths)
    for i in range(5):
        s.set(f"S{i}", "x", float(i))
        s.remove(f"S{i}", float(i) + 0.5)
    assert sorted(s.entries()) == ["S2", "S3", "S4"]
