"""One vocabulary: a public class name in baton means one thing, defined in one place.

A name is defined twice only where one fact crosses a layer under its own name (see
docs/DESIGN.md, "Glossary"): an actor message that carries a job's result or a
machine's effect to the actor that turns it into a core event of the same name, an
effect of one core machine that is an event of another, or the same HTTP answer seen
from both ends. Each such pair is listed here; any other repeat fails."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DELIVERY_MESSAGE, DELIVERY_EVENT = "baton.actors.delivery_messages", "baton.core.delivery_types"
SENTINEL = "baton.core.handoff_sentinel"
TWICE = {
    # a job thread's result -> the DeliveryActor -> the delivery machine's event
    "AgentDone": {DELIVERY_MESSAGE, DELIVERY_EVENT},
    "CheckDone": {DELIVERY_MESSAGE, DELIVERY_EVENT},
    "SendDone": {DELIVERY_MESSAGE, DELIVERY_EVENT},
    "Polled": {DELIVERY_MESSAGE, DELIVERY_EVENT},
    # the registry's news -> every actor -> the delivery machine's event
    "MembersChanged": {"baton.actors.messages", DELIVERY_EVENT},
    # one machine's effect, another actor's message or machine's event
    "WantInSync": {DELIVERY_EVENT, "baton.actors.lease_actor"},
    "LookUp": {"baton.core.handoff_receiver", "baton.actors.lease_actor"},
    "StopIngress": {SENTINEL, DELIVERY_MESSAGE},
    "ResumeIngress": {SENTINEL, DELIVERY_MESSAGE},
    "Drained": {DELIVERY_EVENT, SENTINEL},
    # the same HTTP answer: the Bot API's to us, and the bundled chat service's own
    "WebhookActive": {"baton.channels.base", "baton.channels.chat_schema"},
    # HTTP 429: a channel's to us, and ours to a client
    "RateLimited": {"baton.channels.base", "baton.core.errors"},
}


def defined_names() -> dict[str, set[str]]:
    where: dict[str, set[str]] = defaultdict(set)
    for path in sorted((ROOT / "baton").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].add(module)
    return where


def test_a_name_is_defined_once_unless_it_is_one_fact_at_two_layers() -> None:
    twice = {name: modules for name, modules in defined_names().items() if len(modules) > 1}
    assert twice == TWICE
