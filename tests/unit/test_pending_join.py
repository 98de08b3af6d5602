"""A join made while the node runs: written whole, applied at the node's next start (or
at once by the CLI), and a file that cannot be read stops the start, left as it is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from baton.core.errors import HomeError
from baton.core.registry import open_registry
from baton.stores.config_file import read_config
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity, create_home
from baton.stores.pending_join import apply_pending_join, write_pending_join
from baton.stores.registry_store import JsonRegistryStore


def home(tmp_path: Path) -> tuple[HomePaths, MachineIdentity]:
    identity = create_home(tmp_path / "home", "bravo")
    return HomePaths(tmp_path / "home"), identity


def test_a_pending_join_is_applied_once_and_removed(tmp_path: Path) -> None:
    paths, identity = home(tmp_path)
    assert apply_pending_join(paths) is False  # nothing pending: nothing done
    registry = open_registry(None, identity.public, "tcp://10.0.0.2:8421", "http://h:1", 1.0)
    write_pending_join(paths, registry, {"lease_store": "git+file:///srv/m.git"})
    assert paths.pending_join.stat().st_mode & 0o077 == 0
    assert apply_pending_join(paths) is True
    assert JsonRegistryStore(paths.registry).load() == registry
    assert read_config(paths.config)["lease_store"] == "git+file:///srv/m.git"
    assert not paths.pending_join.exists()
    assert apply_pending_join(paths) is False


@pytest.mark.parametrize(
    "data",
    [b"not json", b"{}", b'{"registry": "{}", "settings": {}}', b'{"registry": 1}',
     b'{"registry": "{\\"format\\": 1}", "settings": []}'],
)  # fmt: skip
def test_a_pending_join_that_cannot_be_read_stops_the_start_and_stays(
    tmp_path: Path, data: bytes
) -> None:
    paths, _ = home(tmp_path)
    paths.pending_join.write_bytes(data)
    os.chmod(paths.pending_join, 0o600)
    with pytest.raises(HomeError, match=r"join\.pending\.json is corrupt"):
        apply_pending_join(paths)
    assert paths.pending_join.read_bytes() == data
    assert JsonRegistryStore(paths.registry).load() is None
