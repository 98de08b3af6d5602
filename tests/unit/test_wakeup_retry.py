"""NodeServices.wakeup tries a failed wakeup again while the reason passes (a target
still catching up), never after a final refusal or with --force, and gives up at its
patience with the last reason."""

from __future__ import annotations

from typing import Any

import pykka
import pytest

from baton.actors.handoff_messages import Wakeup
from baton.adapters.metrics import Counters
from baton.core.clock import FakeClock
from baton.core.errors import WakeupFailed
from baton.core.settings import Settings
from baton.node import services as services_module
from baton.node.services import NodeActors, NodeServices

pytestmark = pytest.mark.timeout(30)

NOT_YET = {
    "ok": False,
    "outcome": "refused",
    "detail": "h refused: t is not in sync yet; try again",
}
FORGED = {"ok": False, "outcome": "refused", "detail": "the ack is not signed by it (forged)"}
DONE = {"ok": True, "outcome": "handed_over", "detail": "awake at epoch 2", "epoch": 2}


class ScriptedHandoff(pykka.ThreadingActor):
    """Answers each Wakeup with the next scripted result (the last one for ever)."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        super().__init__()
        self.answers, self.asked = answers, 0

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Wakeup):
            result = self.answers[min(self.asked, len(self.answers) - 1)]
            self.asked += 1
            message.answer.set_result(dict(result))
        return self.asked


def services(handoff: pykka.ActorRef[Any]) -> NodeServices:
    return NodeServices(
        me=None,  # type: ignore[arg-type]  # (wakeup uses none of these)
        settings=Settings(),
        api_token="t",
        actors=NodeActors(
            registry=None,  # type: ignore[arg-type]
            peers=None,  # type: ignore[arg-type]
            pairing=None,  # type: ignore[arg-type]
            handoff=handoff,
        ),
        counters=Counters(),
        clock=FakeClock(),
        home="/nonexistent",
        endpoints={"http": "http://127.0.0.1:1"},
    )


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services_module, "RETRY_PAUSE_S", 0.01)


def run(answers: list[dict[str, Any]], force: bool = False) -> tuple[Any, int]:
    ref = ScriptedHandoff.start(answers)
    try:
        try:
            outcome: Any = services(ref).wakeup(force)
        except WakeupFailed as exc:
            outcome = exc
        return outcome, ref.ask("count")
    finally:
        ref.stop()


def test_a_target_still_catching_up_is_asked_again_until_it_is_handed_over(fast: None) -> None:
    result, asked = run([NOT_YET, NOT_YET, DONE])
    assert result["outcome"] == "handed_over" and result["attempts"] == 3 and asked == 3


def test_a_final_refusal_and_a_forced_wakeup_are_not_tried_again(fast: None) -> None:
    failed, asked = run([FORGED, DONE])
    assert isinstance(failed, WakeupFailed) and "forged" in failed.detail and asked == 1
    failed, asked = run([NOT_YET, DONE], force=True)
    assert isinstance(failed, WakeupFailed) and "not in sync" in failed.detail and asked == 1


def test_it_gives_up_at_its_patience_with_the_last_reason(
    fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services_module, "WAKEUP_PATIENCE_S", 0.2)
    failed, asked = run([NOT_YET])
    assert isinstance(failed, WakeupFailed) and "not in sync yet" in failed.detail
    assert 2 <= asked <= 21  # every 10 ms for 0.2 s at most
