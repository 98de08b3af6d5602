"""A node's status document as the HTTP tests use it: alpha holds epoch 7, bravo is in
sync, charlie does not answer and is 5 turns behind on the live tail."""

from __future__ import annotations

from typing import Any

ME, BRAVO, CHARLIE = "m_aaaaaaaaaaaaaaaa", "m_bbbbbbbbbbbbbbbb", "m_cccccccccccccccc"

STATUS: dict[str, Any] = {
    "machine_id": ME,
    "nickname": "alpha",
    "version": "0.1.0",
    "role": "awake",
    "holder": ME,
    "epoch": 7,
    "deadline_ms": 1500,
    "store": {"where": "git file:///x", "reachable": True, "error": None},
    "in_sync": [ME, BRAVO],
    "may_take_over": True,
    "alarms": [],
    "peers": [
        {
            "machine_id": BRAVO,
            "nickname": "bravo",
            "reachable": True,
            "rtt_ms": 2.5,
            "last_seen_ms_ago": 400.0,
            "version": "0.1.0",
            "via": "tcp://127.0.0.1:9002",
        },
        {
            "machine_id": CHARLIE,
            "nickname": "charlie",
            "reachable": False,
            "rtt_ms": None,
            "last_seen_ms_ago": None,
            "version": None,
            "via": None,
        },
    ],
    "ttl_ms": 2000,
    "wire": "tcp://127.0.0.1:8421",
    "uptime_s": 12.5,
    "history": [
        {"role": "standby", "holder": BRAVO, "epoch": 6, "reason": "holder changed", "at": 1e9},
        {"role": "awake", "holder": ME, "epoch": 7, "reason": "acquired", "at": 1e9 + 20},
    ],
    "handoff": {"recent": []},
    "delivery": {
        "channel": "telegram:https://api.telegram.org",
        "agent": "echo",
        "term": 7,
        "polling": "ok",
        "ledger": {"received": 1, "processing": 2, "reply-prepared": 0, "acked": 40},
        "queued": 3,
        "alarms": [],
    },
    "tail": {
        "role": "source",
        "turns": 43,
        "topics": 4,
        "buffered_topics": 0,
        "unconfirmed": {BRAVO: 0, CHARLIE: 5},
    },
    "versions": {"version": "0.1.0", "protocols": [1, 1], "mesh_protocol": 1, "skew": []},
}
