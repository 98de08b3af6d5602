"""docs/grafana-dashboard.json: importable, laid out without overlaps, and every PromQL query
in it asks for series that baton's /metrics really exposes, with labels they really carry.

What /metrics exposes is not listed here by hand: it is rendered by
baton.api.prometheus.render from a realistic snapshot (the HTTP tests' status document,
counters and histograms that have counted) and read back with prometheus_client's parser.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from baton.adapters.metrics import Counters
from baton.api import prometheus
from baton.core.errors import (
    FrameTooLarge,
    MalformedFrame,
    Misaddressed,
    SpoofedSender,
    UnknownVersion,
    WrongCode,
)
from baton.wire.transport import AUTH_DENIED, DROPPED_PREFIX, SEND_FAILED
from tests.http.samples import STATUS

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

#: Labels Prometheus adds to every series of a scrape target.
TARGET_LABELS = frozenset({"instance", "job"})

#: Counters the actors name in place (``counters.inc("lease.failovers")``).
COUNTED_BY_ACTORS = ("lease.failovers", "delivery.errors")

#: Internal counters the dashboard plots. They are exposed only once they have counted,
#: so the snapshot counts each; the names come from the code where it can say them.
INTERNAL_COUNTERS = (
    DROPPED_PREFIX + MalformedFrame.code,
    DROPPED_PREFIX + SpoofedSender.code,
    DROPPED_PREFIX + Misaddressed.code,
    DROPPED_PREFIX + FrameTooLarge.code,
    DROPPED_PREFIX + UnknownVersion.code,
    AUTH_DENIED,
    SEND_FAILED,
    *COUNTED_BY_ACTORS,
)

METRIC = re.compile(r"\bbaton_[a-z0-9_]+")
SELECTOR = re.compile(r"\b(baton_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
BY = re.compile(r"\bby\s*\(([^)]*)\)\s*\(")
GROUP_LEFT = re.compile(r"\bgroup_(?:left|right)\s*\(([^)]*)\)\s*(baton_[a-z0-9_]+)")
ON = re.compile(r"\b(?:on|ignoring)\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
OUTER_AGGREGATION = re.compile(r"\s*(?:sum|max|min|avg|count)\s*(?:by\s*\(([^)]*)\))?\s*\(")

Exposed = Mapping[str, frozenset[str]]  # sample name -> the label names its samples carry


# --- what /metrics exposes ---------------------------------------------------------------


def snapshot() -> dict[str, Any]:
    """A node that has done a bit of everything the dashboard plots."""
    c = Counters()
    c.inc("outbox.accepted", 9)
    c.inc("outbox.stale", 2)
    c.inc("delivery.ambiguous")
    c.inc("http.refused." + WrongCode.code, 3)
    for name in INTERNAL_COUNTERS:
        c.inc(name)
    c.observe("failover", 4.2)
    c.observe("handoff", 0.08)
    return {"counters": c.snapshot(), "histograms": c.histograms(), "status": STATUS}


def exposition_labels(text: str) -> dict[str, frozenset[str]]:
    """Every sample name in an exposition, with the union of its samples' label names."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in out.items()}


@functools.cache
def exposed() -> Exposed:
    return exposition_labels(prometheus.render(snapshot()).decode())


# --- what the dashboard asks -------------------------------------------------------------


@functools.cache
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, with those a (collapsed) row holds."""
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def targets() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in all_panels(dashboard()["panels"]) for t in p.get("targets", [])]


def variable_queries() -> list[str]:
    out = []
    for v in dashboard()["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def all_exprs() -> list[str]:
    return [t["expr"] for _, t in targets()] + variable_queries()


# --- the checks, as functions the negative tests can call too ----------------------------


def missing_names(expr: str, exposed: Exposed) -> list[str]:
    """The baton metric names in ``expr`` that are no sample name of the exposition.

    A family name alone (``baton_replies`` for ``baton_replies_total``, a histogram's name
    without ``_bucket``) is missing too: Prometheus stores samples, not families."""
    return [name for name in METRIC.findall(expr) if name not in exposed]


def balanced(text: str, start: int) -> str:
    """The text from ``start`` (just after an opening parenthesis) to its closing one."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def labels_of(names: list[str], exposed: Exposed) -> frozenset[str]:
    return TARGET_LABELS.union(*(exposed.get(n, frozenset()) for n in names))


def split_labels(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def label_problems(expr: str, exposed: Exposed) -> list[str]:
    """Labels ``expr`` matches, groups by or joins on that its baton metrics do not carry
    (best effort: selectors' matchers, ``by (...)``, ``on (...)``, ``group_left (...)``)."""
    problems = []
    for name, matchers in SELECTOR.findall(expr):
        for label in MATCHER.findall(matchers):
            if label not in labels_of([name], exposed):
                problems.append(f"{name} has no label {label!r}")
    for m in BY.finditer(expr):
        names = METRIC.findall(balanced(expr, m.end()))
        for label in split_labels(m.group(1)):
            if label not in labels_of(names, exposed):
                problems.append(f"by ({label}) over {names}: no such label")
    for labels, name in GROUP_LEFT.findall(expr):
        for label in split_labels(labels):
            if label not in labels_of([name], exposed):
                problems.append(f"group_left({label}) from {name}: no such label")
    names = METRIC.findall(expr)
    for m in ON.finditer(expr):
        for label in split_labels(m.group(1)):
            if any(label not in labels_of([n], exposed) for n in names):
                problems.append(f"on ({label}): not every metric of the query has it")
    return problems


def legend_problems(expr: str, legend: str, exposed: Exposed) -> list[str]:
    """Labels a legend names that the query's result cannot carry (best effort: an outer
    ``sum by (...)`` keeps only those labels, a bare outer ``sum (...)`` none)."""
    outer = OUTER_AGGREGATION.match(expr)
    if outer is not None and len(balanced(expr, outer.end())) == len(expr) - outer.end() - 1:
        kept = frozenset(split_labels(outer.group(1) or ""))
    else:
        kept = labels_of(METRIC.findall(expr), exposed)
    return [
        f"legend {{{{{x}}}}}: not a label of the result"
        for x in LEGEND.findall(legend)
        if x not in kept
    ]


# --- the dashboard as a file Grafana imports ---------------------------------------------


def test_the_file_is_a_dashboard_grafana_can_import() -> None:
    d = dashboard()
    assert d["title"] and d["uid"] and d["panels"]
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert [i["name"] for i in d["__inputs"]] == ["DS_PROMETHEUS"]
    assert d["__inputs"][0]["type"] == "datasource"
    assert d["__inputs"][0]["pluginId"] == "prometheus"


def test_every_panel_has_a_unique_id_and_queries_the_input_datasource() -> None:
    panels = list(all_panels(dashboard()["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), ids
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["title"] and p["datasource"] == DATASOURCE, p["title"]
        assert p["targets"], p["title"]
    for p, t in targets():
        assert t["expr"].strip() and t["refId"], p["title"]
        assert t.get("datasource", DATASOURCE) == DATASOURCE, p["title"]
    for p in panels:
        refs = [t["refId"] for t in p.get("targets", [])]
        assert len(refs) == len(set(refs)), p["title"]


def rectangles() -> list[tuple[str, int, int, int, int]]:
    return [
        (p["title"], p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"], p["gridPos"]["h"])
        for p in all_panels(dashboard()["panels"])
    ]


def test_panels_fit_the_grid_and_do_not_overlap() -> None:
    for title, x, y, w, h in rectangles():
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 24, title
    for (a, ax, ay, aw, ah), (b, bx, by, bw, bh) in itertools.combinations(rectangles(), 2):
        apart = ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay
        assert apart, f"{a!r} overlaps {b!r}"


def test_the_instance_variable_lists_the_machines_and_every_query_uses_it() -> None:
    (instance,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "instance"]
    assert instance["type"] == "query" and instance["datasource"] == DATASOURCE
    assert instance["multi"] and instance["includeAll"]
    assert variable_queries() == ["label_values(baton_machine_info, instance)"]
    for p, t in targets():
        assert 'instance=~"$instance"' in t["expr"], p["title"]


# --- the dashboard against what /metrics exposes -----------------------------------------


def test_the_snapshot_exposes_what_a_busy_node_does() -> None:
    e = exposed()
    assert "baton_machine_info" in e and "baton_tail_lag_turns" in e
    assert "baton_failover_duration_seconds_bucket" in e
    assert "le" in e["baton_handoff_duration_seconds_bucket"]
    assert "baton_lease_failovers_total" in e


@pytest.mark.parametrize("name", COUNTED_BY_ACTORS)
def test_each_internal_counter_the_dashboard_plots_is_counted_somewhere(name: str) -> None:
    """So the snapshot does not invent a counter nothing counts (the wire's names come
    from baton.wire.transport and baton.core.errors themselves)."""
    sources = (p.read_text(encoding="utf-8") for p in (ROOT / "baton").rglob("*.py"))
    assert any(f'inc("{name}")' in s for s in sources), name


def test_every_metric_a_query_names_is_exposed() -> None:
    names = {n for expr in all_exprs() for n in METRIC.findall(expr)}
    assert len(names) >= 20  # the dashboard covers the exposition, not one corner of it
    problems = {expr: missing_names(expr, exposed()) for expr in all_exprs()}
    assert {e: m for e, m in problems.items() if m} == {}


def test_every_label_a_query_uses_is_on_its_metric() -> None:
    problems = {expr: label_problems(expr, exposed()) for expr in all_exprs()}
    assert {e: m for e, m in problems.items() if m} == {}


def test_every_label_a_legend_names_is_on_the_result() -> None:
    problems = {
        t["expr"]: legend_problems(t["expr"], t.get("legendFormat", ""), exposed())
        for _, t in targets()
    }
    assert {e: m for e, m in problems.items() if m} == {}


# --- the checks can fail ------------------------------------------------------------------


def test_a_name_baton_does_not_expose_is_reported() -> None:
    e = exposed()
    assert missing_names("rate(baton_made_up_total[5m])", e) == ["baton_made_up_total"]
    assert missing_names("rate(baton_replies[5m])", e) == ["baton_replies"]  # family, no _total
    assert missing_names("baton_failover_duration_seconds", e) == [
        "baton_failover_duration_seconds"
    ]
    assert missing_names("sum(rate(baton_replies_total[5m])) / up", e) == []


def test_a_label_a_metric_does_not_carry_is_reported() -> None:
    e = exposed()
    assert label_problems('baton_replies_total{colour="red"}', e)
    assert label_problems("sum by (colour) (rate(baton_replies_total[5m]))", e)
    assert label_problems("sum by (outcome) (baton_alarms)", e)  # outcome is on replies
    assert label_problems("baton_awake * on(instance) group_left(colour) baton_machine_info", e)
    assert label_problems("baton_awake * on(nickname) baton_machine_info", e)
    assert label_problems("baton_awake * on(instance) baton_machine_info", e) == []
    assert legend_problems("sum(baton_alarms)", "{{instance}}", e)
    assert legend_problems("sum by (outcome) (baton_replies_total)", "{{outcome}}", e) == []
    assert legend_problems("baton_alarms", "{{colour}}", e)
    ok = 'sum by (outcome) (rate(baton_replies_total{outcome="stale",instance=~".*"}[5m]))'
    assert label_problems(ok, e) == []
