"""`GET /metrics`: the node in Prometheus's text exposition format, by prometheus_client.

What is rendered is read at scrape time from one snapshot (``Snapshot``): the counters
and histograms of baton.adapters.metrics, and the node's status document for the gauges
(role, epoch, lease, peers, ledger, live tail). If the node's actors do not answer, the
counters are still rendered and ``baton_status_ok`` is 0. The names are listed in
docs/DESIGN.md, "Metrics"; docs/grafana-dashboard.json uses them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from baton.adapters.metrics import Histogram
from baton.core import status_summary as summary

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The histograms the node keeps, and what each measures.
HISTOGRAMS = {
    "failover": "Failovers this machine made: from the last renewal of the old holder it "
    "saw to its own acquisition (seconds).",
    "handoff": "Planned handoffs (wakeup) to this machine, from the ask to awake (seconds).",
}

#: The pairing codes a refused pairing request answers (http.refused.<code>).
PAIRING_REFUSALS = (
    "pairing_refused",
    "wrong_code",
    "pairing_burned",
    "pairing_expired",
    "pairing_consumed",
    "no_pairing_session",
)

Snapshot = Mapping[str, Any]  # {"counters": {...}, "histograms": {...}, "status": {...}|None}


def render(snapshot: Snapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))
    return generate_latest(registry)


def metric_name(counter: str) -> str:
    """A dotted counter's Prometheus name (without the ``_total`` of its sample)."""
    cleaned = "".join(c if c.isascii() and c.isalnum() else "_" for c in counter)
    return "baton_" + cleaned


class _Collector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        status = self.snapshot.get("status")
        ok = GaugeMetricFamily("baton_status_ok", "1 if the node's parts answered this scrape.")
        ok.add_metric([], 1 if status is not None else 0)
        named = [
            *_counters(self.snapshot["counters"]),
            *_histograms(self.snapshot["histograms"]),
            ok,
            *(_gauges(status) if status is not None else ()),
        ]
        taken = {m.name for m in named}
        yield from named
        for name, value in self.snapshot["counters"].items():
            metric = metric_name(name)
            while metric in taken:  # named like a family above, or like another counter
                metric += "_counter"
            taken.add(metric)
            yield CounterMetricFamily(metric, f"baton counter {name}", value=value)


def _counters(counters: Mapping[str, int]) -> Iterator[Metric]:
    replies = CounterMetricFamily(
        "baton_replies", "Replies sent by the outbox, by the sink's answer.", labels=["outcome"]
    )
    refusals = CounterMetricFamily(
        "baton_pairing_refusals", "Pairing requests refused, by reason.", labels=["reason"]
    )
    for outcome in ("accepted", "repeat", "stale", "unknown", "not_holder"):
        replies.add_metric([outcome], counters.get(f"outbox.{outcome}", 0))
    for code in PAIRING_REFUSALS:
        refusals.add_metric([code], counters.get(f"http.refused.{code}", 0))
    yield replies
    yield refusals
    ambiguous = "Replies that may have reached a sink that cannot say (reported, never hidden)."
    yield CounterMetricFamily(
        "baton_ambiguous_sends", ambiguous, value=counters.get("delivery.ambiguous", 0)
    )


def _histograms(histograms: Mapping[str, Any]) -> Iterator[Metric]:
    for name, about in HISTOGRAMS.items():
        h = histograms.get(name) or Histogram()  # every bucket, at 0 before the first
        family = HistogramMetricFamily(f"baton_{name}_duration_seconds", about)
        family.add_metric([], [(_bound(b), n) for b, n in h.cumulative()], h.sum)
        yield family


def _bound(b: float) -> str:
    return "+Inf" if math.isinf(b) else repr(b)


def _gauge(name: str, about: str, value: float | None) -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, about, value=value)


def _gauges(s: Mapping[str, Any]) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "baton_machine_info",
        "This machine (always 1).",
        labels=["machine_id", "nickname", "version"],
    )
    info.add_metric([s["machine_id"], s["nickname"], s.get("version") or ""], 1)
    yield info
    yield from _gauge(
        "baton_awake", "1 if this machine holds the lease and acts.", s["role"] == "awake"
    )
    yield from _gauge(
        "baton_lease_epoch", "The lease's epoch as this machine knows it.", s["epoch"]
    )
    left = s.get("deadline_ms")
    yield from _gauge(
        "baton_lease_time_left_seconds",
        "Time this machine may still act on its lease (0 on a standby).",
        0.0 if left is None else left / 1000.0,
    )
    store = s.get("store")
    if store is not None:
        up = store.get("reachable")
        yield from _gauge(
            "baton_lease_store_up", "1 if the lease store answers.", None if up is None else up
        )
    yield from _gauge("baton_alarms", "Alarms `baton status` shows now.", len(summary.alarms(s)))
    yield from _peers(s)
    yield from _delivery(s.get("delivery"))
    yield from _tail(s, s.get("tail"))


def _peers(s: Mapping[str, Any]) -> Iterator[Metric]:
    labels = ["peer", "machine_id"]
    rtt = GaugeMetricFamily("baton_peer_rtt_seconds", "Round trip of the last pong.", labels=labels)
    reachable = GaugeMetricFamily(
        "baton_peer_reachable", "1 if the peer answers pings.", labels=labels
    )
    in_sync = GaugeMetricFamily(
        "baton_peer_in_sync", "1 if the lease record names the peer in sync.", labels=labels
    )
    for p in s["peers"]:
        key = [p.get("nickname") or p["machine_id"], p["machine_id"]]
        reachable.add_metric(key, 1 if p["reachable"] else 0)
        if p["rtt_ms"] is not None:
            rtt.add_metric(key, p["rtt_ms"] / 1000.0)
        said = summary.in_sync(s, p["machine_id"])
        if said is not None:
            in_sync.add_metric(key, 1 if said else 0)
    yield from (rtt, reachable, in_sync)


def _delivery(d: Mapping[str, Any] | None) -> Iterator[Metric]:
    if d is None:
        return
    ledger = GaugeMetricFamily("baton_ledger_entries", "Ledger entries by state.", labels=["state"])
    for state, n in d["ledger"].items():
        ledger.add_metric([state], n)
    yield ledger
    yield from _gauge("baton_ledger_pending", "Inbound messages not yet done.", summary.pending(d))
    yield from _gauge("baton_replies_queued", "User messages queued to send.", d["queued"])


def _tail(s: Mapping[str, Any], t: Mapping[str, Any] | None) -> Iterator[Metric]:
    if t is None:
        return
    lag = GaugeMetricFamily(
        "baton_tail_lag_turns",
        "The holder's turns a standby has not yet confirmed (the live tail's lag).",
        labels=["peer"],
    )
    for peer, behind in t["unconfirmed"].items():
        lag.add_metric([summary.name_of(s, peer)], behind)
    yield lag
    yield from _gauge("baton_transcript_turns", "Turns in this machine's transcripts.", t["turns"])
