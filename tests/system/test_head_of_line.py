"""No head-of-line blocking (issue 15): one topic's agent run that does not end holds up
no other topic, though the channel gives at most 100 updates a poll from the cursor;
and the message the cursor passed unanswered is still answered, once, by the machine
that takes over when its holder dies. At a sink that forgives nothing."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import SYNC_POLL_S, Mesh
from tests.system.chat_kit import (
    answered,
    check_exactly_once,
    dump,
    failed_over,
    post,
    reported_ambiguous,
    start_mesh,
)
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(420)]

OTHERS = 150  # more than one poll's 100 updates


def test_a_stalled_topic_holds_up_no_other_and_survives_the_death_of_its_holder(
    make_mesh: Callable[..., Mesh], tmp_path: Path
) -> None:
    release = tmp_path / "release"
    with ChatServer(tmp_path / "tg.sqlite", mode="telegram") as chat:
        agent = "python:tests.system.agents:stall"  # no agent timeout ends the stall
        mesh = start_mesh(make_mesh, chat, agent=agent, BATON_AGENT_TIMEOUT_MS="200000")
        try:
            first = wait_for(mesh.synced_holder, 60, "a holder in sync", SYNC_POLL_S)
            posted = {post(chat, "t0", f"stall {release}"): ("t0", f"stall {release}")}
            [stalled] = posted
            wait_for(lambda: first.status()["delivery"]["working"] > 0, 30, "the agent running")
            for i in range(OTHERS):
                topic, text = f"t{1 + i % 4}", f"other {i}"
                posted[post(chat, topic, text)] = (topic, text)
            others = set(posted) - {stalled}
            wait_for(lambda: answered(chat, others), 90, "every other topic answered")
            assert not answered(chat, {stalled})
            epoch = first.status()["epoch"]
            first.signal_node(signal.SIGKILL)  # it dies with the stalled run in flight
            wait_for(lambda: failed_over(mesh, epoch), 90, "a holder of a newer epoch")
            release.touch()
            wait_for(lambda: answered(chat, {stalled}), 120, "the stalled message answered")
        except BaseException:
            dump(mesh)
            raise
        outcomes = check_exactly_once(chat, posted, reported_ambiguous(mesh), mesh)
        assert outcomes["accepted"] >= len(posted), outcomes
