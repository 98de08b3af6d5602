"""What the status page shows, computed from the node's status (and the pool's view):
plain values for the template in baton.api.page. The alarms and names come from
baton.core.status_summary, so the page and `baton status` say the same."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from baton.core import status_summary as summary

#: Entries of the timeline shown, newest first.
TIMELINE_KEPT = 20


def _clock(wall: float | None) -> str:
    if not wall:
        return "-"
    return datetime.datetime.fromtimestamp(wall).strftime("%H:%M:%S")


def _seconds(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f} s"


def page_view(view: Mapping[str, Any], now_wall: float) -> dict[str, Any]:
    s = view["status"]
    holder = s.get("holder")
    return {
        "me": s["nickname"],
        "machine_id": s["machine_id"],
        "role": s["role"],
        "holder": summary.name_of(s, holder),
        "holder_id": holder or "",
        "epoch": s["epoch"],
        "updated": _clock(now_wall),
        "alarms": summary.alarms(s),
        "lease": _lease(s),
        "machines": summary.machine_rows(s),
        "replies": _replies(s),
        "tail": _tail(s),
        "topics": _topics(view.get("pool")),
        "timeline": _timeline(s),
    }


def _lease(s: Mapping[str, Any]) -> dict[str, Any]:
    store = s.get("store")
    if s.get("failover"):
        left = s["failover"]
    elif s["role"] == "awake":
        left = f"{_seconds(s.get('deadline_ms'))} left to act"
    elif s.get("takeover_in_ms") is not None:
        left = f"a standby may take over in {_seconds(s['takeover_in_ms'])}"
    else:
        left = "-"
    return {
        "left": left,
        "ttl": _seconds(s.get("ttl_ms")),
        "store": store["where"] if store else "none",
        "store_ok": None if store is None else store["reachable"],
        "store_error": store.get("error") if store else None,
    }


def _replies(s: Mapping[str, Any]) -> dict[str, Any] | None:
    d = s.get("delivery")
    if d is None:
        return None
    counters = s.get("counters") or {}
    return {
        "channel": d["channel"],
        "agent": d["agent"],
        "answering": bool(d.get("term")),
        "answered": d["ledger"].get("acked", 0),
        "pending": summary.pending(d),
        "queued": d["queued"],
        "ambiguous": counters.get("delivery.ambiguous", 0),
    }


def _tail(s: Mapping[str, Any]) -> dict[str, Any] | None:
    t = s.get("tail")
    if t is None:
        return None
    lag = [(summary.name_of(s, peer), n) for peer, n in sorted(t["unconfirmed"].items())]
    return {
        "role": t["role"],
        "turns": t["turns"],
        "topics": t["topics"] if t["role"] == "source" else t["buffered_topics"],
        "lag": lag,
    }


def _topics(pool: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if pool is None:
        return None
    if "error" in pool:
        return {"error": pool["detail"], "rows": [], "total": 0}
    rows = [
        {
            "topic": t["topic"],
            "machine": t.get("nickname") or t.get("machine_id") or "nobody",
            "why": t["reason"],
            "waiting": t.get("waiting", False),
            "alive": t.get("alive", True),
        }
        for t in pool.get("topics", [])
    ]
    return {"error": None, "rows": rows, "total": pool.get("topics_total", len(rows))}


def _timeline(s: Mapping[str, Any]) -> list[dict[str, str]]:
    """The lease's changes this machine saw and the handoffs it took part in."""
    events: list[tuple[float, str, str]] = []
    for h in s.get("history", []):
        who = summary.name_of(s, h.get("holder"))
        if h["role"] == "awake":
            what = f"epoch {h['epoch']}: {s['nickname']} became the holder ({h['reason']})"
            kind = "holder"
        else:
            what = f"epoch {h['epoch']}: holder {who}; {s['nickname']} stands by ({h['reason']})"
            kind = "standby"
        events.append((h.get("at") or 0.0, kind, what))
    for o in (s.get("handoff") or {}).get("recent", []):
        events.append(
            (o.get("at") or 0.0, "handoff", f"handoff ({o['side']}) {o['kind']}: {o['detail']}")
        )
    events.sort(key=lambda e: e[0], reverse=True)
    return [
        {"at": _clock(at), "kind": kind, "what": what} for at, kind, what in events[:TIMELINE_KEPT]
    ]
