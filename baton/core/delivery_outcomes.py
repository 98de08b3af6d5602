"""What the delivery machine does with its jobs' results: agent runs, sends and
delivery checks (sans-IO; what a result means is decided in baton.core.delivery_steps,
as enums; this part records, counts, reports and schedules accordingly):

- a delivered send is recorded (and its committed marker told), even another term's;
- a send that surely delivered nothing is sent again, after the channel's retry_after
  for a 429 (which holds every send back), and is never ambiguous;
- a reply that may have arrived at a sink that cannot say is reported as an ambiguous
  send (counted, an alarm, a log event) and then resent or recorded by policy;
- a stale refusal ends the term at once.
"""

from __future__ import annotations

from baton.core import delivery
from baton.core.delivery_pipeline import DeliveryState, commit, ours, prepare, pump, term_changed
from baton.core.delivery_steps import (
    AfterAgent,
    AfterCheck,
    AfterSend,
    after_agent,
    after_check,
    after_send,
)
from baton.core.delivery_types import (
    ERROR,
    WARNING,
    AgentDone,
    CheckDone,
    Count,
    Effect,
    LedgerOp,
    Log,
    SendDone,
)
from baton.core.ledger import LedgerState
from baton.core.ledger import fail as failed

RETRY_UNKNOWN_MS = 500
NOTHING_DELIVERED = (
    AfterSend.STAND_DOWN,
    AfterSend.RETRY,
    AfterSend.RATE_LIMITED,
    AfterSend.NOT_SENT,
)


def agent_done(s: DeliveryState, done: AgentDone, out: list[Effect]) -> None:
    mine = ours(s, done.token, done.key)
    entry = s.ledger.index.get(done.key)
    pending = entry is not None and entry.state.rank <= LedgerState.PROCESSING.rank
    step = after_agent(mine, s.holding, pending, done.replies is not None)
    if step is AfterAgent.IGNORE:
        return  # another term's run (the message stays for whoever holds), or done
    assert entry is not None
    if step is AfterAgent.FAILED:
        out.append(Count("delivery.agent_failed"))
        error, wall = done.error or "unknown", done.at.wall_ms
        entry = s.ledger.step(out, LedgerOp.FAIL, failed(entry, error, wall), done.key, error, wall)
        out.append(Log(WARNING, f"agent failed on {done.key} (attempt {entry.attempts}): {error}"))
        s.retry_at[done.key] = done.at.now + delivery.retry_delay_ms(entry.attempts)
    else:
        assert done.replies is not None
        prepare(s, entry, done.replies, done.at, out)
    pump(s, done.at, out)


def send_done(s: DeliveryState, done: SendDone, out: list[Effect]) -> None:
    mine = ours(s, done.token, done.key)
    at, now = done.at, done.at.now
    step = after_send(mine, done.status, done.error, done.not_delivered, done.retry_after_ms)
    if step is AfterSend.IGNORE:
        return
    if step in NOTHING_DELIVERED:
        s.unsure.discard((done.key, done.index))
    match step:
        case AfterSend.COMMIT:
            commit(s, done.key, done.index, done.message_id, done.epoch or 1, at=at, out=out)
        case AfterSend.STAND_DOWN:  # stand down now, not after the lease notices
            s.fenced_at = max(s.fenced_at, done.epoch or 0)
            term_changed(s, None, at, out)
        case AfterSend.RETRY:
            s.retry_at[done.key] = now + RETRY_UNKNOWN_MS
        case AfterSend.RATE_LIMITED:  # the chat's limit holds every send back
            out.append(Count("delivery.rate_limited"))
            s.sends_held_until = max(s.sends_held_until, now + done.retry_after_ms)
            wait_s = done.retry_after_ms / 1000
            s.alarms.raise_alarm("rate_limited", f"waiting {wait_s:g} s", at.wall_ms / 1000)
            s.retry_at[done.key] = max(now + RETRY_UNKNOWN_MS, s.sends_held_until)
        case AfterSend.NOT_SENT:
            out.append(Count("delivery.not_sent"))
            s.retry_at[done.key] = max(now + RETRY_UNKNOWN_MS, s.sends_held_until)
        case AfterSend.REJECTED:  # sending again cannot help: done, logged, counted
            out.append(Count("delivery.rejected"))
            text = f"{done.key} reply {done.index} cannot be delivered: {done.error}"
            out.append(Log(ERROR, text))
            commit(s, done.key, done.index, None, s.last_epoch or 1, at=at, out=out)
        case AfterSend.UNKNOWN:  # still unsure: ask the sink before sending again
            out.append(Count("delivery.send_unknown"))
            s.retry_at[done.key] = now + RETRY_UNKNOWN_MS
    pump(s, at, out)


def check_done(s: DeliveryState, done: CheckDone, out: list[Effect]) -> None:
    mine = ours(s, done.token, done.key)
    step = after_check(mine, done.error is not None, done.delivered, s.cfg.ambiguous_policy)
    match step:
        case AfterCheck.IGNORE:
            return
        case AfterCheck.RETRY:
            out.append(Count("delivery.check_failed"))
            s.retry_at[done.key] = done.at.now + RETRY_UNKNOWN_MS
            return
        case AfterCheck.AMBIGUOUS_SEND | AfterCheck.AMBIGUOUS_COMMIT:
            ambiguous(s, done, step, out)
    if step in (AfterCheck.SEND, AfterCheck.AMBIGUOUS_SEND):
        s.unsure.discard((done.key, done.index))
        s.mine.add(done.key)  # the later replies are ours to send now
    else:
        unknown = "_unknown" if step is AfterCheck.AMBIGUOUS_COMMIT else ""
        out.append(Count(f"delivery.resumed_commit{unknown}"))
        commit(s, done.key, done.index, None, s.last_epoch or 1, at=done.at, out=out)
    pump(s, done.at, out)


def ambiguous(s: DeliveryState, done: CheckDone, step: AfterCheck, out: list[Effect]) -> None:
    """A reply that may have reached a sink that cannot say: reported, never hidden
    (counted, an alarm, and a log event a checker can match to a double)."""
    key, index = done.key, done.index
    out.append(Count("delivery.ambiguous"))
    resend = step is AfterCheck.AMBIGUOUS_SEND
    action = "send" if resend else "commit_unknown"
    what = "sent again" if resend else "recorded as delivered"
    detail = f"{key} reply {index} may have arrived already; {what}"
    s.alarms.raise_alarm("ambiguous_send", detail, done.at.wall_ms / 1000)
    event = {"kind": "ambiguous_send", "key": key, "index": index, "action": action}
    event["message_id"] = int(key.rsplit(":", 1)[1])
    out.append(Log(WARNING, f"ambiguous send: {detail}", event))
