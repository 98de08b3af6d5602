"""The chaos checker catches each violation it names, on a history made to have it, and
passes a clean one (it must be able to fail, and to pass)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from baton.demo.verdict import Stretch, check, stretches
from tools.chaos.checker import main


def posted(*ids: int) -> list[dict[str, Any]]:
    return [{"kind": "posted", "message_id": i, "topic": "t0", "at": float(i)} for i in ids]


def role(
    machine: str, role: str, epoch: int, at: float, until: float | None = None
) -> dict[str, Any]:
    event = {"kind": "role", "machine": machine, "role": role, "epoch": epoch, "at_ms": at}
    if until is not None:
        event["acted_until_ms"] = until
    return event


def send(seq: int, reply_to: int, epoch: int | None, outcome: str = "accepted") -> dict[str, Any]:
    return {"seq": seq, "time": float(seq), "reply_to": reply_to, "reply_key": f"k{reply_to}",
            "epoch": epoch, "outcome": outcome}  # fmt: skip


CLEAN_ROLES = [
    role("alpha", "awake", 1, 0.0),
    role("alpha", "standby", 1, 120.0, until=100.0),
    role("bravo", "awake", 2, 150.0),
]


def test_a_clean_history_passes() -> None:
    sends = [send(1, 1, 1), send(2, 2, 1), send(3, 2, 1, "repeat"), send(4, 3, 2)]
    report = check(posted(1, 2, 3) + CLEAN_ROLES, sends)
    assert report.ok and report.summary()["ok"] is True
    assert (report.posted, report.accepted) == (3, 3)


def test_a_lost_message_is_reported() -> None:
    report = check(posted(1, 2, 3) + CLEAN_ROLES, [send(1, 1, 1), send(2, 3, 2)])
    assert not report.ok and report.lost == [2]


def test_a_doubled_reply_is_reported() -> None:
    report = check(posted(1, 2), [send(1, 1, 1), send(2, 2, 1), send(3, 2, 2)])
    assert not report.ok and report.duplicated == {2: 2}
    assert check(posted(1), [send(1, 1, 1), send(2, 1, 1)], replies_per_message=2).ok


def test_an_accepted_stale_send_is_reported_and_a_refused_one_is_not() -> None:
    refused = [send(1, 1, 2), send(2, 2, 1, "stale"), send(3, 2, 2)]
    assert check(posted(1, 2), refused).ok
    accepted = [send(1, 1, 2), send(2, 2, 1)]
    report = check(posted(1, 2), accepted)
    assert not report.ok and [s["seq"] for s in report.stale_accepted] == [2]


def test_overlapping_holders_are_reported() -> None:
    roles = [
        role("alpha", "awake", 1, 0.0),
        role("alpha", "standby", 1, 300.0, until=250.0),
        role("bravo", "awake", 2, 200.0),  # before alpha stopped acting
    ]
    report = check(roles, [])
    assert not report.ok and len(report.overlapping) == 1
    a, b = report.overlapping[0]
    assert {a.machine, b.machine} == {"alpha", "bravo"}


def test_an_open_stretch_overlaps_anything_after_it() -> None:
    roles = [role("alpha", "awake", 1, 0.0), role("bravo", "awake", 2, 500.0)]
    assert len(check(roles, []).overlapping) == 1


def test_epochs_that_go_backwards_are_reported() -> None:
    roles = [
        role("alpha", "awake", 3, 0.0),
        role("alpha", "standby", 3, 100.0, until=90.0),
        role("bravo", "awake", 2, 200.0),
    ]
    report = check(roles, [])
    assert not report.ok and [(a.epoch, b.epoch) for a, b in report.epochs_backwards] == [(3, 2)]


def test_one_epoch_on_two_machines_is_reported_and_one_term_resumed_is_not() -> None:
    suspended = [  # a late renewal: alpha suspends itself, then the renewal lands
        role("alpha", "awake", 3, 0.0),
        role("alpha", "standby", 3, 100.0, until=90.0),
        role("alpha", "awake", 3, 200.0),
    ]
    assert check(suspended, []).ok
    stolen = [*suspended[:2], role("bravo", "awake", 3, 200.0)]
    report = check(stolen, [])
    pairs = [(a.machine, b.machine) for a, b in report.epochs_backwards]
    assert not report.ok and pairs == [("alpha", "bravo")]


def test_stretches_are_built_from_role_events_only() -> None:
    events = [{"kind": "fault", "what": "kill"}, *CLEAN_ROLES]
    assert stretches(events) == [
        Stretch("alpha", 1, 0.0, 100.0),
        Stretch("bravo", 2, 150.0, float("inf")),
    ]


def test_the_command_reads_files_and_exits_non_zero_on_a_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps(e) + "\n" for e in posted(1, 2) + CLEAN_ROLES))
    sends = tmp_path / "sends.json"
    sends.write_text(json.dumps({"sends": [send(1, 1, 1)]}))
    assert main([str(history), str(sends), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["lost"] == 1 and out["ok"] is False
    sends.write_text(json.dumps({"sends": [send(1, 1, 1), send(2, 2, 2)]}))
    assert main([str(history), str(sends)]) == 0
    assert capsys.readouterr().out.strip().endswith("OK")
