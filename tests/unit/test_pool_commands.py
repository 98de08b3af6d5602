"""Moves asked in the conversation (baton.core.pool_commands) and the one planner every
move goes through (baton.core.pool_transfer): whole-message commands naming a member,
"back here" always understood, everything else a message; the planner's refusals in
order, its rate limit, and the confirmations it asks for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.pool_commands import MAX_COMMAND, NicknameCommand, RelocationNicknameSet
from baton.core.pool_placement import Pin, Placement, PoolMachine, Reason
from baton.core.pool_transfer import (
    BURST,
    MoveRefused,
    TransferPlan,
    TransferRefusal,
    TransferRequest,
    plan_transfer,
    transfer_limiter,
)

pytestmark = pytest.mark.timeout(60)

NAMES = RelocationNicknameSet({"mini": "m_mini", "desktop": "m_desk"}, "laptop", "m_lap")


@pytest.mark.parametrize(
    ("text", "nickname", "here"),
    [
        ("move this to the mini", "mini", False),
        ("Move this to mini.", "mini", False),
        ("please move it to the desktop!", "desktop", False),
        ("  move this conversation on   desktop  ", "desktop", False),
        ("move it back here", "laptop", True),
        ("Move this topic here?", "laptop", True),
        ("move it back to the laptop", "laptop", False),
        ("move this chat onto mini", "mini", False),
        ("Move it back here, please.", "laptop", True),
        ("move this to the mini please", "mini", False),
    ],
)
def test_a_move_naming_a_member_is_a_command(text: str, nickname: str, here: bool) -> None:
    command = NicknameCommand.parse(text, NAMES)
    assert command is not None
    assert (command.nickname, command.here) == (nickname, here)
    assert command.machine_id == NAMES.machine(nickname)


@pytest.mark.parametrize(
    "text",
    [
        "move this to the top of the list",  # no member is named "top"
        "can you move this to the mini?",  # not the whole message
        "move this to the mini and then tell me a joke",
        "move",
        "",
        "move this to the mini" + " " * MAX_COMMAND,  # a long message is a message
        "m\u043eve this to mini",  # a Cyrillic o: not our word
        "run this here",  # things people ask an agent (an attack review found them)
        "Put this here!",
        "run this chat here",
        "put it on the desktop",
        "move this to the m\u0131n\u0130",  # Unicode case games: no member
    ],
)
def test_anything_else_is_a_message_for_the_agent(text: str) -> None:
    assert NicknameCommand.parse(text, NAMES) is None


def test_this_machines_own_nickname_is_always_in_the_set() -> None:
    alone = RelocationNicknameSet({}, "laptop", "m_lap")
    assert "laptop" in alone and alone.machine("laptop") == "m_lap"
    command = NicknameCommand.parse("move it back here", alone)
    assert command is not None and command.machine_id == "m_lap"


@given(st.text(max_size=200))
def test_parse_never_raises_and_names_only_members(text: str) -> None:
    command = NicknameCommand.parse(text, NAMES)
    assert command is None or command.nickname in NAMES


NOW = 50_000.0
TTL = 3000
MACHINES = {
    "m_lap": PoolMachine("m_lap", "laptop", 1, NOW),
    "m_mini": PoolMachine("m_mini", "mini", 0, NOW),
    "m_desk": PoolMachine("m_desk", "desktop", 0, NOW - TTL - 1),  # offline
}
RUNNING = Placement("t1", "m_lap", Reason.PLACED, 3)


def plan(
    to: str,
    *,
    topic: str = "t1",
    confirm: bool = False,
    in_flight: bool = False,
    pin: Pin | None = None,
    limiter: object = None,
    placement: Placement | None = RUNNING,
) -> TransferPlan | TransferRefusal:
    return plan_transfer(
        TransferRequest(topic, to, "operator", confirm),
        machines=MACHINES,
        known_topics={"t1", "t2"},
        placement=placement,
        pin=pin,
        in_flight=in_flight,
        limiter=limiter or transfer_limiter(),  # type: ignore[arg-type]
        now_ms=NOW,
        wall_s=1000.0,
        ttl_ms=TTL,
    )


def test_a_move_to_a_live_member_pins_and_hands_the_topic_over() -> None:
    by_name, by_id = plan("mini"), plan("m_mini")
    assert by_name == by_id
    assert isinstance(by_name, TransferPlan)
    assert by_name.to_json() == {"topic": "t1", "from": "m_lap", "to": "m_mini",
                                 "handoff": True, "epoch": 4}  # fmt: skip
    assert by_name.pin == Pin("t1", "m_mini", 1000.0, "operator")


def refusal(result: TransferPlan | TransferRefusal) -> MoveRefused:
    assert isinstance(result, TransferRefusal), result
    return result.code


def test_the_refusals_each_say_why() -> None:
    assert refusal(plan("nobody")) is MoveRefused.UNKNOWN_MACHINE
    assert refusal(plan("mini", topic="t9")) is MoveRefused.UNKNOWN_TOPIC
    pinned = Pin("t1", "m_lap", 1.0, "x")
    assert refusal(plan("laptop", pin=pinned)) is MoveRefused.ALREADY_THERE
    offline = plan("desktop")
    assert refusal(offline) is MoveRefused.NEEDS_CONFIRM
    assert isinstance(offline, TransferRefusal) and "offline" in offline.detail
    busy = plan("mini", in_flight=True)
    assert refusal(busy) is MoveRefused.NEEDS_CONFIRM
    assert isinstance(busy, TransferRefusal) and "in flight" in busy.detail
    assert offline.to_json()["error"] == "needs_confirm"


def test_confirmed_moves_go_through() -> None:
    waiting = plan("desktop", confirm=True)
    assert isinstance(waiting, TransferPlan) and waiting.target == "m_desk" and waiting.handoff
    assert isinstance(plan("mini", in_flight=True, confirm=True), TransferPlan)


def test_running_there_unpinned_is_pinned_without_a_handoff() -> None:
    here = plan("laptop", in_flight=True)  # the reply in flight stays where it is
    assert isinstance(here, TransferPlan) and not here.handoff and here.epoch == 3
    fresh = plan("mini", placement=None)
    assert isinstance(fresh, TransferPlan) and fresh.source is None and fresh.epoch == 1


def test_a_topic_moves_at_most_a_burst_then_waits() -> None:
    limiter = transfer_limiter()
    for _ in range(BURST):
        assert isinstance(plan("mini", limiter=limiter), TransferPlan)
    assert refusal(plan("mini", limiter=limiter)) is MoveRefused.RATE_LIMITED
    assert isinstance(plan("mini", topic="t2", limiter=limiter), TransferPlan)  # per topic
    assert refusal(plan("nobody", limiter=limiter)) is MoveRefused.UNKNOWN_MACHINE  # still said


def test_a_clock_stepped_back_earns_no_extra_move() -> None:
    limiter = transfer_limiter()
    times = [100_000.0] * BURST + [0.0] + [100_000.0] * BURST
    planned = [
        isinstance(
            plan_transfer(
                TransferRequest("t1", "mini", "op"),
                machines=MACHINES,
                known_topics={"t1"},
                placement=RUNNING,
                pin=None,
                in_flight=False,
                limiter=limiter,
                now_ms=at,
                wall_s=1.0,
                ttl_ms=TTL * 100,
            ),
            TransferPlan,
        )
        for at in times
    ]
    assert sum(planned) == BURST
