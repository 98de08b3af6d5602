"""RegistryActor: saves before it announces, refuses bad changes without changing anything."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import nacl.public
import nacl.signing
import pykka
import pytest

from baton.actors.messages import AddMachine, GetSelf, ListMachines
from baton.actors.registry_actor import RegistryActor
from baton.core.clock import FakeClock
from baton.core.errors import InvalidCard, NicknameTaken
from baton.core.identity import PublicIdentity
from baton.core.registry import MachineEntry, Role, open_registry
from baton.stores.registry_store import MemoryRegistryStore
from tools.mesh import wait_for

pytestmark = pytest.mark.timeout(30)


def card(nick: str, seed: int) -> dict[str, str]:
    sk = nacl.signing.SigningKey(bytes([seed]) * 32)
    ek = nacl.public.PrivateKey(bytes([seed + 1]) * 32)
    me = PublicIdentity.from_keys(nick, bytes(sk.verify_key), bytes(ek.public_key))
    return {**me.to_dict(), "wire": "tcp://127.0.0.1:9001", "http": "http://127.0.0.1:9002"}


ME = PublicIdentity.from_dict(
    {k: v for k, v in card("laptop", 1).items() if k not in {"wire", "http"}}
)


class Recorder:
    def __init__(self, store: MemoryRegistryStore) -> None:
        self.store = store
        self.calls: list[tuple[list[str], bool]] = []

    def __call__(self, peers: Sequence[MachineEntry]) -> None:
        saved = self.store.load()
        on_disk = saved is not None and all(p.machine_id in saved.entries for p in peers)
        self.calls.append(([p.nickname for p in peers], on_disk))


@pytest.fixture
def actor() -> Iterator[tuple[pykka.ActorRef, MemoryRegistryStore, Recorder]]:  # type: ignore[type-arg]
    store = MemoryRegistryStore()
    recorder = Recorder(store)
    opened = open_registry(None, ME, "tcp://127.0.0.1:1", "http://127.0.0.1:2", 0.0)
    ref = RegistryActor.start(opened, store, FakeClock(), [recorder])
    yield ref, store, recorder
    ref.stop(timeout=5)


def test_start_saves_and_announces_no_peers(actor) -> None:  # type: ignore[no-untyped-def]
    ref, store, recorder = actor
    assert ref.ask(GetSelf(), timeout=5).role is Role.AWAKE
    wait_for(lambda: recorder.calls, 5, "the first announcement")
    assert recorder.calls[0] == ([], True)
    assert store.load() is not None


def test_an_added_machine_is_saved_before_it_is_announced(actor) -> None:  # type: ignore[no-untyped-def]
    ref, store, recorder = actor
    entry = ref.ask(AddMachine(card("mini", 10)), timeout=5)
    assert entry.role is Role.STANDBY
    assert recorder.calls[-1] == (["mini"], True)
    assert store.load().get(entry.machine_id) == entry  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad, error",
    [
        (lambda: {**card("mini", 20), "wire": "nope"}, InvalidCard),
        (lambda: card("laptop", 1), InvalidCard),  # ourselves
        (lambda: card("mini", 30), NicknameTaken),
    ],
)
def test_refused_changes_change_nothing(actor, bad, error) -> None:  # type: ignore[no-untyped-def]
    ref, store, recorder = actor
    ref.ask(AddMachine(card("mini", 10)), timeout=5)
    saved, calls = store.data, len(recorder.calls)
    with pytest.raises(error):
        ref.ask(AddMachine(bad()), timeout=5)
    assert store.data == saved and len(recorder.calls) == calls
    assert [e.nickname for e in ref.ask(ListMachines(), timeout=5)] == ["laptop", "mini"]
