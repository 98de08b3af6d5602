"""/metrics in Prometheus's exposition format, read back by prometheus_client's own
parser: the gauges from a status document, the counters, the histograms."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from baton.adapters.metrics import BUCKETS, Counters
from baton.api import prometheus
from tests.http.samples import BRAVO, CHARLIE, ME, STATUS


def parse(snapshot: dict[str, Any]) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample by name, then by its labels."""
    text = prometheus.render(snapshot).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(samples: dict[str, dict[Any, float]], name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def snapshot(status: dict[str, Any] | None, counters: Counters | None = None) -> dict[str, Any]:
    c = counters or Counters()
    return {"counters": c.snapshot(), "histograms": c.histograms(), "status": status}


def test_the_gauges_say_what_the_status_says() -> None:
    s = parse(snapshot(STATUS))
    assert one(s, "baton_status_ok") == 1
    assert one(s, "baton_awake") == 1 and one(s, "baton_lease_epoch") == 7
    assert one(s, "baton_lease_time_left_seconds") == 1.5
    assert one(s, "baton_lease_store_up") == 1
    assert one(s, "baton_machine_info", machine_id=ME, nickname="alpha", version="0.1.0") == 1
    assert one(s, "baton_peer_rtt_seconds", peer="bravo", machine_id=BRAVO) == 0.0025
    assert one(s, "baton_peer_reachable", peer="charlie", machine_id=CHARLIE) == 0
    assert one(s, "baton_peer_in_sync", peer="bravo", machine_id=BRAVO) == 1
    assert one(s, "baton_peer_in_sync", peer="charlie", machine_id=CHARLIE) == 0
    assert (("machine_id", CHARLIE), ("peer", "charlie")) not in s["baton_peer_rtt_seconds"]
    assert one(s, "baton_ledger_pending") == 3 and one(s, "baton_replies_queued") == 3
    assert one(s, "baton_ledger_entries", state="acked") == 40
    assert one(s, "baton_tail_lag_turns", peer="charlie") == 5
    assert one(s, "baton_alarms") == 2  # charlie unreachable, charlie not in sync


def test_a_standby_has_no_time_left_and_no_lag() -> None:
    standby = copy.deepcopy(STATUS)
    standby.update(role="standby", holder=BRAVO, deadline_ms=None)
    standby["tail"] = {**standby["tail"], "role": "buffer", "unconfirmed": {}}
    s = parse(snapshot(standby))
    assert one(s, "baton_awake") == 0 and one(s, "baton_lease_time_left_seconds") == 0
    assert "baton_tail_lag_turns" not in s


def test_counters_outcomes_and_refusals() -> None:
    c = Counters()
    c.inc("outbox.accepted", 9)
    c.inc("outbox.stale", 2)
    c.inc("delivery.ambiguous")
    c.inc("http.refused.pairing_refused", 4)
    c.inc("wire.dropped.malformed")
    s = parse(snapshot(STATUS, c))
    assert one(s, "baton_replies_total", outcome="accepted") == 9
    assert one(s, "baton_replies_total", outcome="stale") == 2
    assert one(s, "baton_replies_total", outcome="unknown") == 0
    assert one(s, "baton_ambiguous_sends_total") == 1
    assert one(s, "baton_pairing_refusals_total", reason="pairing_refused") == 4
    assert one(s, "baton_wire_dropped_malformed_total") == 1
    assert one(s, "baton_outbox_accepted_total") == 9  # every counter under its own name too


def test_a_counter_named_like_a_family_keeps_both() -> None:
    c = Counters()
    c.inc("lease.epoch", 3)  # would be baton_lease_epoch, the gauge
    c.inc("a.b", 1)
    c.inc("a_b", 2)  # the same name once dots are underscores
    c.inc("wire.dropped.café", 4)  # a name Prometheus would refuse
    s = parse(snapshot(STATUS, c))
    assert one(s, "baton_lease_epoch") == 7
    assert one(s, "baton_lease_epoch_counter_total") == 3
    assert {one(s, "baton_a_b_total"), one(s, "baton_a_b_counter_total")} == {1, 2}
    assert one(s, "baton_wire_dropped_caf__total") == 4


def test_histograms_in_buckets() -> None:
    c = Counters()
    for seconds in (0.03, 0.2, 2.0, 16.0, 500.0):
        c.observe("failover", seconds)
    s = parse(snapshot(None, c))
    assert one(s, "baton_failover_duration_seconds_count") == 5
    assert one(s, "baton_failover_duration_seconds_sum") == pytest.approx(518.23)
    assert one(s, "baton_failover_duration_seconds_bucket", le="0.05") == 1
    assert one(s, "baton_failover_duration_seconds_bucket", le="2.5") == 3
    assert one(s, "baton_failover_duration_seconds_bucket", le="120.0") == 4
    assert one(s, "baton_failover_duration_seconds_bucket", le="+Inf") == 5
    assert one(s, "baton_handoff_duration_seconds_count") == 0  # none yet, still there
    assert len(s["baton_handoff_duration_seconds_bucket"]) == len(BUCKETS) + 1  # all, at 0
    assert len(s["baton_failover_duration_seconds_bucket"]) == len(BUCKETS) + 1


def test_without_the_status_the_counters_still_go_out() -> None:
    c = Counters()
    c.inc("wire.received", 5)
    s = parse(snapshot(None, c))
    assert one(s, "baton_status_ok") == 0 and one(s, "baton_wire_received_total") == 5
    assert "baton_awake" not in s


def test_a_bad_duration_is_refused() -> None:
    c = Counters()
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError):
            c.observe("handoff", bad)
    assert c.histograms() == {}
