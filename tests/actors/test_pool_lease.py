"""The pool's runs across the holder's lease: a holder that suspends itself (no renewal
confirmed before its local deadline) and is renewed at the same epoch goes on with the
runs it had out, as delivery does (baton.core.delivery_pipeline.term_changed), so no
message delivery waits on is left without an answer; a holder deposed at a new epoch
drops them (the new holder places them again). Each failed before its fix: CI's chaos
campaign with the pool on left three topics waiting for ever after a self-suspension."""

from __future__ import annotations

import pytest

from baton.actors.messages import Tick
from baton.actors.pool_messages import GetPool
from baton.core.lease_types import LeaseChanged, Phase
from tests.actors.test_pool_routing import Mesh, finish_everywhere, mesh, on

pytestmark = pytest.mark.timeout(60)

__all__ = ["mesh"]  # the fixture


def suspend(mesh: Mesh, epoch: int = 3) -> None:
    a = mesh.nodes[0]
    a.ask(LeaseChanged(Phase.STANDBY, a.id, epoch, "self-suspended"))


def renew(mesh: Mesh, epoch: int = 3) -> None:
    a = mesh.nodes[0]
    a.ask(LeaseChanged(Phase.HOLDING, a.id, epoch, "renewed"))


def spread(mesh: Mesh) -> list[int]:
    """Three topics, one on each machine; the tokens delivery waits on."""
    a = on(mesh)
    tokens = [mesh.route(a, f"1/{t}", 1, f"hello {t}", 3).token for t in range(3)]
    mesh.wire()
    assert [len(n.jobs.runs) for n in mesh.nodes] == [1, 1, 1]
    return tokens


def test_runs_out_across_a_self_suspension_are_answered_after_the_renewal(mesh: Mesh) -> None:
    a = mesh.nodes[0]
    tokens = spread(mesh)
    suspend(mesh)
    renew(mesh)
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert sorted(d.token for d in a.done) == tokens
    assert a.counters.get("pool.refused.stale") == 0


def test_results_that_come_while_suspended_still_reach_delivery(mesh: Mesh) -> None:
    """Delivery, standing by, frees the topics they were for (and runs them again
    once it holds); nothing waits on a result the pool dropped."""
    a = mesh.nodes[0]
    tokens = spread(mesh)
    suspend(mesh)
    a.ask(Tick(mesh.clock.monotonic_ms()))  # no run is placed while it stands by
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert sorted(d.token for d in a.done) == tokens
    renew(mesh)
    again = mesh.route(a, "1/0", 1, "hello 0", 3)  # delivery runs it again: it goes out
    mesh.wire()
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert again.token in [d.token for d in a.done]


def test_a_holder_deposed_at_a_new_epoch_drops_its_runs(mesh: Mesh) -> None:
    a, b, _ = mesh.nodes
    spread(mesh)
    mesh.lease(b, 4)
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert a.done == []
    assert a.counters.get("pool.refused.stale") == 3
    assert "routing" not in a.ask(GetPool())


def test_nothing_new_goes_out_while_it_stands_by(mesh: Mesh) -> None:
    """A result taken while it stands by frees its topic's next message, which waits:
    it goes out once the holder is renewed, not before."""
    a = on(mesh)
    mesh.route(a, "1/0", 1, "one", 3)  # alpha runs 1/0 (all loads 0: the lowest id)
    second = mesh.route(a, "1/0", 2, "two", 3)  # waits behind it
    mesh.wire()
    suspend(mesh)
    finish_everywhere(mesh)  # "one" ends while alpha stands by
    mesh.wire()
    mesh.hear_all(a)  # a tick: still nothing placed
    mesh.wire()
    assert all(not n.jobs.runs for n in mesh.nodes)
    assert [d.replies for d in a.done] == [("re: one",)]
    renew(mesh)
    mesh.hear_all(a)
    mesh.wire()
    finish_everywhere(mesh)
    mesh.wire()
    a.ask(GetPool())
    assert [(d.token, d.replies) for d in a.done][1:] == [(second.token, ("re: two",))]
