"""The lease and the mesh's protocol version (issue 21): a machine that cannot speak the
protocol the mesh runs at never acquires the lease, not even forced, and says why once;
once it can, it takes over as any standby would; a holder told so keeps renewing."""

from __future__ import annotations

from baton.core.lease import Alarm, LeaseChanged, Phase, ProtocolChecked, TakeoverForced
from tests.unit.lease_sim import TIMING, Sim

WAIT = TIMING.standby_wait(TIMING.ttl_ms)
WHY = "this machine (baton 0.3.0, protocols 2-3) cannot speak protocol 1, the one the mesh runs at"


def test_a_machine_that_cannot_speak_the_mesh_protocol_never_acquires_even_forced() -> None:
    sim = Sim(1)
    [a] = sim.machines
    said = sim.feed(a, ProtocolChecked(WHY))
    assert said == [Alarm("version_skew", WHY)]
    assert sim.feed(a, ProtocolChecked(WHY)) == []  # said once, not at every check
    sim.feed(a, TakeoverForced(sim.now(a)))
    sim.run(3 * WAIT)
    assert a.state.phase is Phase.STANDBY and a.state.inflight is None
    assert not sim.actors()
    sim.feed(a, ProtocolChecked(None))
    sim.run(500)
    assert a.state.phase is Phase.HOLDING and a.state.mine and a.state.mine.epoch == 1


def test_a_standby_that_cannot_speak_it_does_not_take_over_a_dead_holder() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(500)
    assert a.state.phase is Phase.HOLDING
    sim.feed(b, ProtocolChecked(WHY))
    a.paused = True
    sim.run(3 * WAIT)
    assert b.state.phase is Phase.STANDBY and not sim.actors()  # nobody, rather than it
    sim.feed(b, ProtocolChecked(None))  # upgraded, or the mesh moved
    sim.run(WAIT)
    assert b.state.phase is Phase.HOLDING and b.state.mine and b.state.mine.epoch == 2


def test_a_holder_told_it_cannot_speak_it_keeps_renewing() -> None:
    sim = Sim(2)
    a, b = sim.machines
    sim.run(500)
    sim.feed(a, ProtocolChecked(WHY))
    sim.run(3 * WAIT)
    assert a.state.phase is Phase.HOLDING and a.state.mine and a.state.mine.epoch == 1
    assert b.state.phase is Phase.STANDBY


def test_an_acquisition_in_flight_when_it_learns_it_cannot_is_released_as_it_lands() -> None:
    """A roster lands during a slow CAS: the lease it wins is never acted on."""
    sim = Sim(2)
    a, _ = sim.machines
    assert kinds(sim.tick(a)) == ["WriteLease"]  # the acquisition goes out
    sim.feed(a, ProtocolChecked(WHY))
    sim.carry_out(a)  # it lands
    inflight = a.state.inflight
    assert a.state.phase is Phase.STANDBY and inflight is not None and inflight.kind == "release"
    assert not any(isinstance(e, LeaseChanged) and e.phase is Phase.HOLDING for e in a.effects)
    sim.carry_out(a)  # the release lands: the store says nobody holds
    stored = sim.store.read().record
    assert stored is not None and stored.released and stored.holder == a.me
    sim.run(WAIT)
    assert a.state.phase is Phase.STANDBY and not sim.actors()
    assert not any(isinstance(e, LeaseChanged) and e.phase is Phase.HOLDING for e in a.effects)


def kinds(effects: list[object]) -> list[str]:
    return [type(e).__name__ for e in effects]
