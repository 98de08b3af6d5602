"""PairingSessionStore contract, run against the file adapter and its memory twin."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from baton.core.errors import HomeError
from baton.core.pairing import PairingSession, new_session, start_attempt
from baton.stores.files import atomic_write, ensure_private_dir
from baton.stores.home import HomePaths
from baton.stores.pairing_store import (
    FilePairingSessionStore,
    MemoryPairingSessionStore,
    PairingSessionStore,
    session_to_bytes,
)

NOW = 1_700_000_000.0
SESSION = new_session(random.Random(1).randbytes, NOW)
OTHER = new_session(random.Random(2).randbytes, NOW + 10, verify=True)


@dataclasses.dataclass
class Harness:
    """A store plus raw access to what it keeps, to plant and inspect stored bytes."""

    store: PairingSessionStore
    name: str  # how a HomeError must name what it could not read
    put: Callable[[bytes], None]
    raw: Callable[[], bytes | None]


def file_harness(tmp_path: Path) -> Harness:
    paths = HomePaths(tmp_path / "home")
    ensure_private_dir(paths.machine_dir)
    path = paths.pairing_session

    def raw() -> bytes | None:
        return path.read_bytes() if path.exists() else None

    return Harness(
        FilePairingSessionStore(path), str(path), lambda data: atomic_write(path, data), raw
    )


def memory_harness(tmp_path: Path) -> Harness:
    store = MemoryPairingSessionStore()

    def put(data: bytes) -> None:
        store.data = data

    return Harness(store, "memory", put, lambda: store.data)


@pytest.fixture(params=[file_harness, memory_harness], ids=["file", "memory"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    yield request.param(tmp_path)


def test_an_empty_store_loads_none(harness: Harness) -> None:
    assert harness.store.load() is None


def test_save_then_load_round_trips(harness: Harness) -> None:
    harness.store.save(SESSION)
    assert harness.store.load() == SESSION


def test_save_replaces_the_saved_session(harness: Harness) -> None:
    harness.store.save(SESSION)
    harness.store.save(start_attempt(SESSION, NOW))
    assert harness.store.load() == start_attempt(SESSION, NOW)
    harness.store.save(OTHER)
    assert harness.store.load() == OTHER


def test_clear_forgets_the_session_and_clearing_twice_is_fine(harness: Harness) -> None:
    harness.store.save(SESSION)
    harness.store.clear()
    assert harness.store.load() is None
    harness.store.clear()
    assert harness.store.load() is None


def _doc(**session_changes: object) -> dict[str, object]:
    return {"format": 1, "session": {**SESSION.to_dict(), **session_changes}}


def _without(key: str) -> bytes:
    doc = _doc()
    session = doc["session"]
    assert isinstance(session, dict)
    del session[key]
    return json.dumps(doc).encode()


CORRUPT = {
    "empty": b"",
    "garbage": b"\x00\xffnot json at all",
    "not an object": b"[1, 2, 3]",
    "no format": json.dumps({"session": SESSION.to_dict()}).encode(),
    "future format": json.dumps({**_doc(), "format": 2}).encode(),
    "extra top-level key": json.dumps({**_doc(), "note": "x"}).encode(),
    "session not an object": json.dumps({"format": 1, "session": "x"}).encode(),
    "attempts_used a string": json.dumps(_doc(attempts_used="1")).encode(),
    "consumed an int": json.dumps(_doc(consumed=1)).encode(),
    "created_at NaN": json.dumps(_doc(created_at=float("nan"))).encode(),
    "missing key": _without("expires_at"),
    "unknown session key": json.dumps(_doc(owner="mallory")).encode(),
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("data", list(CORRUPT.values()), ids=list(CORRUPT))
def test_a_corrupt_session_raises_home_error_and_is_left_untouched(
    harness: Harness, data: bytes
) -> None:
    harness.put(data)
    with pytest.raises(HomeError) as info:
        harness.store.load()
    assert harness.name in info.value.detail
    assert SESSION.code not in info.value.detail  # the stored secret is never quoted
    assert harness.raw() == data


# --- the file adapter only -------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_file_is_written_0600_and_atomically(tmp_path: Path) -> None:
    h = file_harness(tmp_path)
    path = Path(h.name)
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    h.store.save(SESSION)
    assert mode(path) == 0o600
    assert path.read_bytes() == session_to_bytes(SESSION)
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temp file left behind


def test_a_session_file_others_can_read_is_refused_and_left_untouched(tmp_path: Path) -> None:
    h = file_harness(tmp_path)
    h.store.save(SESSION)
    path = Path(h.name)
    data = path.read_bytes()
    os.chmod(path, 0o644)
    with pytest.raises(HomeError, match="chmod 600") as info:
        h.store.load()
    assert h.name in info.value.detail
    assert (path.read_bytes(), mode(path)) == (data, 0o644)


def test_a_directory_in_place_of_the_file_raises_home_error(tmp_path: Path) -> None:
    h = file_harness(tmp_path)
    Path(h.name).mkdir()
    with pytest.raises(HomeError) as info:
        h.store.load()
    assert h.name in info.value.detail


def test_the_memory_twin_keeps_the_same_bytes_as_the_file(tmp_path: Path) -> None:
    f, m = file_harness(tmp_path), memory_harness(tmp_path)
    for h in (f, m):
        h.store.save(OTHER)
    assert f.raw() == m.raw() == session_to_bytes(OTHER)
    loaded: PairingSession | None = m.store.load()
    assert loaded == OTHER
