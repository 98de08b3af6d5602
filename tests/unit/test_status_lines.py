"""`baton status`'s human lines: a holder names its standbys out of sync as alarms, a
standby out of sync says it will not take over by itself, a holder that cannot poll
says so instead of "answering"."""

from __future__ import annotations

from typing import Any

import click

from baton.cli.status import _delivery_line, _lease_line, _plain, render
from baton.core.status_summary import _sync_alarms
from tests.http.samples import STATUS

STORE = {"where": "git file:///x", "reachable": True, "error": None}
PEERS = [
    {"machine_id": "m_bbbbbbbbbbbbbbbb", "nickname": "bravo"},
    {"machine_id": "m_cccccccccccccccc", "nickname": "charlie"},
]
DELIVERY: dict[str, Any] = {
    "channel": "telegram",
    "agent": "echo",
    "term": 3,
    "ledger": {"acked": 5},
    "queued": 0,
    "polling": "ok",
}


def test_the_holder_names_every_standby_out_of_sync() -> None:
    view = {"role": "awake", "in_sync": ["m_bbbbbbbbbbbbbbbb"], "peers": PEERS}
    alarms = _sync_alarms({**view, "delivery": DELIVERY})
    assert len(alarms) == 1 and "charlie is not in sync" in alarms[0].detail
    assert _sync_alarms({**view, "delivery": None}) == []  # no channel: nothing to sync
    assert _sync_alarms({**view, "role": "standby", "delivery": DELIVERY}) == []


def test_a_standby_out_of_sync_says_it_takes_over_only_by_force() -> None:
    view = {"role": "standby", "holder": "m_a", "epoch": 3, "store": STORE}
    view |= {"machine_id": "m_b", "nickname": "bravo", "peers": []}
    assert "OUT OF SYNC" in _lease_line({**view, "may_take_over": False})
    assert "OUT OF SYNC" not in _lease_line({**view, "may_take_over": True})


def test_a_webhook_is_no_answering() -> None:
    assert "answering (epoch 3)" in _delivery_line(DELIVERY)
    line = _delivery_line({**DELIVERY, "polling": "webhook_active"})
    assert "CANNOT POLL" in line and "answering" not in line


def test_the_screen_puts_the_alarms_first_and_colours_only_when_asked() -> None:
    view = {**STATUS, "peers": [dict(p) for p in STATUS["peers"]]}
    plain = render(view, _plain)
    assert plain[0].startswith("alpha (m_aaaaaaaaaaaaaaaa) is AWAKE; holder alpha, epoch 7")
    assert [line.split(":")[0] for line in plain[1:3]] == ["ALARM unreachable", "ALARM out_of_sync"]
    assert plain[3].startswith("lease: held, epoch 7")
    table = plain[plain.index(next(x for x in plain if x.startswith("machine "))) :]
    assert [row.split()[0] for row in table] == ["machine", "alpha", "bravo", "charlie"]
    assert "charlie" in table[3] and " NO " in table[3]
    assert not any("\x1b[" in line for line in plain)
    coloured = render(view, click.style)
    assert "\x1b[31m" in coloured[1] and "\x1b[31m" in coloured[-1]  # red: alarm, bad row
    assert click.unstyle("\n".join(coloured)) == "\n".join(plain)
