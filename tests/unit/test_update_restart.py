"""The UpdateRestartHandshake (issue 21): what a restart expects and how the node that
comes up judges it; its file is taken once, and one that does not read is removed and
said so, never keeping a node from starting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from baton.core.update_restart import UpdateRestartHandshake
from baton.stores.home import HomePaths
from baton.stores.restart_store import restart_check, take_handshake, write_handshake

H = UpdateRestartHandshake("0.2.0", "0.1.0", 1.7e9)


def test_the_node_that_comes_up_judges_what_the_restart_expected() -> None:
    assert (H.judge("0.2.0").ok, H.judge("0.2.0").kind) == (True, "updated")
    old = H.judge("0.1.0")
    assert not old.ok and old.kind == "old" and "old version 0.1.0" in old.detail
    other = H.judge("0.3.0")
    assert not other.ok and other.kind == "other"
    same = UpdateRestartHandshake("0.1.0", "0.1.0", 0.0).judge("0.1.0")
    assert same.ok and same.kind == "restarted"


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"expected": "0.2.0", "before": "0.1.0"},
        {"expected": "0.2.0", "before": "0.1.0", "asked_at": 1.0, "x": 1},
        {"expected": "0.2 0", "before": "0.1.0", "asked_at": 1.0},
        {"expected": "0.2.0", "before": 1, "asked_at": 1.0},
        {"expected": "0.2.0", "before": "0.1.0", "asked_at": True},
        {"expected": "0.2.0", "before": "0.1.0", "asked_at": "now"},
    ],
)
def test_a_handshake_decodes_strictly(doc: Any) -> None:
    with pytest.raises(ValueError):
        UpdateRestartHandshake.from_dict(doc)


def test_the_handshake_is_taken_once_and_judged(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path)
    assert restart_check(paths, "0.2.0") is None  # no restart asked for this start
    write_handshake(paths, H)
    assert paths.restart_handshake.stat().st_mode & 0o777 == 0o600
    said = restart_check(paths, "0.1.0")
    assert said is not None and said["ok"] is False and said["kind"] == "old"
    assert said["expected"] == "0.2.0" and said["running"] == "0.1.0"
    assert not paths.restart_handshake.exists()
    assert take_handshake(paths) == (None, None)  # taken once


@pytest.mark.parametrize("data", [b"{not json", b"[" * 100 + b"]" * 100, json.dumps({}).encode()])
def test_a_file_that_does_not_read_is_removed_and_said(tmp_path: Path, data: bytes) -> None:
    paths = HomePaths(tmp_path)
    paths.data_dir.mkdir(parents=True)
    paths.restart_handshake.write_bytes(data)
    said = restart_check(paths, "0.2.0")
    assert said is not None and said["ok"] is False and said["kind"] == "unread"
    assert "removed" in said["detail"] and not paths.restart_handshake.exists()
