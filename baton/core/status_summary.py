"""What a person should see first in a node's status (`GET /api/status`): the alarms,
worst first, and who is who. Shared by `baton status` and the status page, so both say
the same thing in the same words. Pure functions over the status document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

#: How many of each source's recent alarms are shown (the status keeps more).
RECENT_ALARMS = 3

POLL_PROBLEMS = {
    "webhook_active": "CANNOT POLL: a webhook is set on the bot (delete it: deleteWebhook)",
    "rate_limited": "polling is rate-limited by the channel (waiting as told)",
    "conflict": "another poller is taking this bot's updates",
}


class StatusAlarm(NamedTuple):
    kind: str
    detail: str


def names(status: Mapping[str, Any]) -> dict[str, str]:
    """Machine id to nickname, for every machine the status names (this one included)."""
    known = {p["machine_id"]: p.get("nickname") or p["machine_id"] for p in status["peers"]}
    known[status["machine_id"]] = status["nickname"]
    return known


def name_of(status: Mapping[str, Any], machine_id: str | None) -> str:
    if not machine_id:
        return "nobody"
    return names(status).get(machine_id, machine_id)


def pending(delivery: Mapping[str, Any] | None) -> int:
    """Inbound messages not yet done (every ledger state but acked)."""
    if delivery is None:
        return 0
    return sum(n for state, n in delivery["ledger"].items() if state != "acked")


def alarms(status: Mapping[str, Any]) -> list[StatusAlarm]:
    """Everything in the status that needs a person, most urgent first: the lease store
    and this machine's standing, then peers, sync and versions, then recent alarms."""
    found: list[StatusAlarm] = []
    store = status.get("store")
    if store and store.get("reachable") is False:
        said = f"the lease store does not answer: {store['error']}"
        found.append(StatusAlarm("lease_store", said))
    if status.get("unable"):
        found.append(StatusAlarm("may_not_hold", str(status["unable"])))
    elif status.get("role") == "standby" and status.get("may_take_over") is False:
        found.append(
            StatusAlarm(
                "out_of_sync", "this machine is catching up: it takes over only by wakeup --force"
            )
        )
    delivery = status.get("delivery") or {}
    problem = POLL_PROBLEMS.get(delivery.get("polling", ""))
    if delivery.get("term") and problem:
        found.append(StatusAlarm("polling", problem))
    for peer in status["peers"]:
        if not peer["reachable"]:
            who = peer.get("nickname") or peer["machine_id"]
            found.append(StatusAlarm("unreachable", f"{who} does not answer pings"))
    found += _sync_alarms(status)
    found += [
        StatusAlarm("version_skew", said) for said in (status.get("versions") or {}).get("skew", [])
    ]
    restarted = status.get("restart")
    if restarted and not restarted["ok"]:
        found.append(StatusAlarm("restart", restarted["detail"]))
    recent = status.get("alarms", [])[-RECENT_ALARMS:] + delivery.get("alarms", [])[-RECENT_ALARMS:]
    found += [StatusAlarm(a["kind"], a["detail"]) for a in recent]
    return found


def _sync_alarms(status: Mapping[str, Any]) -> list[StatusAlarm]:
    """The holder: every peer its lease record does not name in sync (no automatic
    failover to it until it has caught up)."""
    if status.get("role") != "awake" or status.get("failover") or status.get("delivery") is None:
        return []
    in_sync = set(status.get("in_sync") or ())
    return [
        StatusAlarm(
            "out_of_sync",
            f"{p['nickname'] or p['machine_id']} is not in sync "
            "(it does not take over by itself until it has caught up)",
        )
        for p in status["peers"]
        if p["machine_id"] not in in_sync
    ]


def in_sync(status: Mapping[str, Any], machine_id: str) -> bool | None:
    """Whether the lease record names this machine in sync (None: no lease store, or
    the machine is the holder, whose replies the others follow)."""
    if status.get("failover") or machine_id == status.get("holder"):
        return None
    return machine_id in set(status.get("in_sync") or ())


def machine_rows(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every machine as `baton status` and the page show it, this one first: role and
    in sync as the lease says (None: not asked of it), the rest as display text."""
    holder = s.get("holder")

    def row(machine_id: str, **more: Any) -> dict[str, Any]:
        return {
            "machine_id": machine_id,
            "role": "awake" if machine_id == holder else "standby",
            "in_sync": in_sync(s, machine_id),
            **more,
        }

    rows = [
        row(
            s["machine_id"],
            nickname=s["nickname"],
            this=True,
            version=s.get("version") or "?",
            reachable=None,
            rtt="-",
            via=s.get("wire") or "-",
            seen="now",
        )
    ]
    for p in s["peers"]:
        ago = p.get("last_seen_ms_ago")
        rows.append(
            row(
                p["machine_id"],
                nickname=p.get("nickname") or p["machine_id"],
                this=False,
                version=p.get("version") or "?",
                reachable=p["reachable"],
                rtt="-" if p.get("rtt_ms") is None else f"{p['rtt_ms']:.1f} ms",
                via=p.get("via") or "-",
                seen="never" if ago is None else f"{ago / 1000:.1f} s ago",
            )
        )
    return rows
