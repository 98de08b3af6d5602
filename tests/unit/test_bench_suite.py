"""The benchmark suite's table: one row per measure, from each benchmark's JSON."""

from __future__ import annotations

from tools.bench.__main__ import rows

MS = {"median": 60.0, "p95": 70.0}


def test_every_benchmark_gives_its_rows() -> None:
    results = {
        "failover": {"takeover_ms": MS, "lateness_ms": MS},
        "handoff": {"acquired_ms": MS, "first_reply_ms": MS},
        "throughput": {"on": {"median_rps": 180.0}, "off": {"median_rps": 450.0}, "ratio": 2.5},
        "tail": {"results": [{"flush_ms": 1000, "lag_ms": MS}]},
    }
    table = rows(results)
    assert [r[0] for r in table] == ["failover"] * 2 + ["handoff"] * 2 + ["throughput"] * 2 + [
        "tail"
    ]
    assert table[4] == ("throughput", "replies/s, guarantees on", "180.0", "ratio off/on 2.5")
    assert table[-1] == ("tail", "tail lag, flush 1000 ms", "60.0 ms", "p95 70.0 ms")
    assert rows({}) == []
    state = {"change_ms_median": 300.0, "change_ms_p95": 400.0}
    state |= {"verify_ms_median": 20.0, "verify_ms_p95": 30.0}
    assert rows({"state_sync": state}) == [
        ("state_sync", "state change to verified checkout", "300.0 ms", "p95 400.0 ms"),
        ("state_sync", "verification per commit", "20.0 ms", "p95 30.0 ms"),
    ]
    archive = {"topics": 50, "write_ms_median": 2.0, "write_ms_p95": 3.0}
    archive |= {"take_in_ms_median": 0.5, "take_in_ms_p95": 0.7}
    archive |= {"look_ms_median": 4.0, "look_ms_p95": 5.0}
    assert rows({"archive": archive}) == [
        ("archive", "holder's archive write per turn", "2.0 ms", "p95 3.0 ms"),
        ("archive", "standby's take-in per turn", "0.5 ms", "p95 0.7 ms"),
        ("archive", "standby's look, 50 topics", "4.0 ms", "p95 5.0 ms"),
    ]
    placement = {"machines": 50, "topics": 10000, "fresh_per_s": 30000}
    placement |= {"steady_per_s": 160000, "failover_per_s": 130000}
    assert rows({"placement": placement}) == [
        ("placement", "decisions/s, new, 50 machines, 10000 topics", "30000", ""),
        ("placement", "decisions/s, sticky, 50 machines, 10000 topics", "160000", ""),
        ("placement", "decisions/s, after a death, 50 machines, 10000 topics", "130000", ""),
    ]


def test_the_upgrade_benchmark_gives_its_rows() -> None:
    upgrade = {f"{k}_ms_{s}": v for k in ("flag", "restart", "holder_restart")
               for s, v in (("median", 60.0), ("p95", 70.0))}  # fmt: skip
    assert rows({"upgrade": upgrade}) == [
        ("upgrade", "flag change to every member", "60.0 ms", "p95 70.0 ms"),
        ("upgrade", "restart of a standby, judged", "60.0 ms", "p95 70.0 ms"),
        ("upgrade", "restart of the holder, the role moved", "60.0 ms", "p95 70.0 ms"),
    ]
