"""A rolling update's plan (issue 21): standbys first, then the role handed once to an
updated standby in sync, never onto one that is not; blocked when the new version
cannot speak the mesh's protocol."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from baton.core.upgrade_plan import MachineVersion, UpgradeStep, plan_upgrade

NEW, OLD = "0.2.0", "0.1.0"


def m(name: str, running: str | None, awake: bool = False, in_sync: bool = True) -> MachineVersion:
    return MachineVersion(name, running, awake, in_sync)


def test_standbys_first_then_the_role_then_done() -> None:
    alpha, bravo = m("alpha", OLD, awake=True), m("bravo", OLD)
    first = plan_upgrade(NEW, (1, 2), 1, [alpha, bravo])
    assert [(s.machine, s.action) for s in first.steps] == [("bravo", "update"), ("alpha", "wait")]
    catching_up = plan_upgrade(NEW, (1, 2), 1, [alpha, m("bravo", NEW, in_sync=False)])
    assert [s.action for s in catching_up.steps] == ["wait", "wait"]
    ready = plan_upgrade(NEW, (1, 2), 1, [alpha, m("bravo", NEW)])
    assert (
        ready.steps == (UpgradeStep("bravo", "wakeup", ready.steps[0].detail),)
        and "`baton wakeup` on bravo" in ready.steps[0].detail
    )
    done = plan_upgrade(NEW, (1, 2), 1, [m("alpha", NEW), m("bravo", NEW, awake=True)])
    assert done.done and done.steps == () and done.blocked is None


def test_a_version_that_cannot_speak_the_mesh_protocol_is_blocked() -> None:
    plan = plan_upgrade("0.3.0", (2, 2), 1, [m("alpha", OLD, awake=True), m("bravo", OLD)])
    assert plan.blocked is not None and "speaks protocols 2-2" in plan.blocked
    assert not plan.done and plan.steps == ()


versions = st.sampled_from([NEW, OLD, None])
one = st.builds(m, st.sampled_from("abcde"), versions, st.booleans(), st.booleans())
machines = st.lists(one, min_size=1, max_size=5, unique_by=lambda x: x.name)


@given(machines)
def test_the_role_goes_only_to_an_updated_standby_in_sync_and_done_means_done(
    found: list[MachineVersion],
) -> None:
    holders = [x for x in found if x.awake][:1]  # one holder at most
    found = [
        x if x in holders else MachineVersion(x.name, x.running, False, x.in_sync) for x in found
    ]
    plan = plan_upgrade(NEW, (1, 2), 1, found)
    by_name = {x.name: x for x in found}
    for step in plan.steps:
        if step.action == "wakeup":
            target = by_name[step.machine]
            assert target.running == NEW and target.in_sync and not target.awake
    standbys_ready = all(x.running == NEW and x.in_sync for x in found if not x.awake)
    assert plan.done == (standbys_ready and all(x.running == NEW for x in found if x.awake))
    assert len([s for s in plan.steps if s.action == "wakeup"]) <= 1  # the role moves once
