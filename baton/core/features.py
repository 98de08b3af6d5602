"""Component flags (issue 21): the mesh-wide switches of baton's optional components,
set on the holder, signed, replicated. No I/O.

The optional components are ``pool`` (the pool's own state carries its switch: `baton
pool enable|disable` and `baton features enable|disable pool` are one switch),
``state_sync`` and ``secret_sync``, which this module's FeatureFlags carries. The core
guarantees (the lease, the ledger, the fenced outbox, and with them the live tail and
the markers a new holder's catch-up relies on) have no flag: ``check_name`` refuses
them by name.

Theory of operation. The holder alone changes the flags; every change is a new
``version`` under its lease ``epoch``, signed with its Ed25519 key. A member takes a
FeatureFlags (``judge``) only if it is signed by the machine it names with that
member's key (else ForgedFlags), that machine is the one its lease view says holds, at
that epoch (else FlagsNotFromHolder), and it is newer than what it has, by (epoch,
version) (else StaleFlags: a replay, or a deposed holder's change). A new holder signs
what it has at its own epoch and sends it, so every member converges on its flags.

Invariants:
- A FeatureFlags that exists is well-formed: its disabled names are known flags,
  epoch and version integers in [0, MAX_EPOCH], its signer an id of at most
  MAX_ID_CHARS ("" only for flags never set).
- ``FeatureFlags.from_dict(f.to_dict()) == f``; the signature covers every field.
- ``newer`` is a strict order on (epoch, version).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from baton.core.errors import (
    FeatureRefused,
    FlagsNotFromHolder,
    ForgedFlags,
    MalformedFlags,
    StaleFlags,
)
from baton.core.signatures import Signer, Verify, decode_signature, signable

SIGNING_CONTEXT = b"baton component flags v1\n"
MAX_EPOCH = 2**63 - 1
MAX_ID_CHARS = 256

#: The components with a flag, and what each one does.
COMPONENTS = {
    "pool": "topics run on several machines (the pool's own switch)",
    "state_sync": "the agent's state directory follows the awake role",
    "secret_sync": "every member keeps every secret",
}
SIGNED = ("state_sync", "secret_sync")  # the flags a FeatureFlags carries
CORE = {
    "lease": "the fenced lease: never two captains",
    "ledger": "the ledger: never a dropped reply",
    "outbox": "the fenced outbox: never a doubled reply",
    "live_tail": "the live tail and its markers: a new holder's catch-up",
}
FIELDS = frozenset({"disabled", "epoch", "version", "signer", "signature"})


def check_name(name: str) -> str:
    """``name`` if a component has that flag; FeatureRefused saying why not."""
    if name in COMPONENTS:
        return name
    if name in CORE:
        raise FeatureRefused(f"{name} is a core guarantee ({CORE[name]}): it has no off switch")
    raise FeatureRefused(f"no component is called {name!r}; the flags are {', '.join(COMPONENTS)}")


@dataclass(frozen=True)
class FeatureFlags:
    """The signed flags: which of SIGNED are off (every other one is on)."""

    disabled: frozenset[str] = field(default_factory=frozenset)
    epoch: int = 0
    version: int = 0
    signer: str = ""  # the holder that set them ("": never set, all on)
    signature: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.disabled, frozenset) or not self.disabled <= set(SIGNED):
            raise MalformedFlags(f"disabled: expected names among {list(SIGNED)}")
        for name in ("epoch", "version"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EPOCH:
                raise MalformedFlags(f"{name}: expected an integer in [0, {MAX_EPOCH}]")
        if not isinstance(self.signer, str) or len(self.signer) > MAX_ID_CHARS:
            raise MalformedFlags(f"signer: expected a machine id of at most {MAX_ID_CHARS}")

    def enabled(self, name: str) -> bool:
        return name not in self.disabled

    def signable(self) -> bytes:
        return signable(SIGNING_CONTEXT, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        sig = None if self.signature is None else base64.b64encode(self.signature).decode()
        return {
            "disabled": sorted(self.disabled),
            "epoch": self.epoch,
            "version": self.version,
            "signer": self.signer,
            "signature": sig,
        }

    @classmethod
    def from_dict(cls, doc: object) -> FeatureFlags:
        """The flags in ``doc`` (a peer's, or a file's); MalformedFlags naming what is
        wrong. Unknown keys and unknown names are refused, never ignored."""
        if not isinstance(doc, Mapping) or set(doc) != FIELDS:
            raise MalformedFlags(f"expected an object with {sorted(FIELDS)}")
        disabled = doc["disabled"]
        if not isinstance(disabled, list) or not all(isinstance(n, str) for n in disabled):
            raise MalformedFlags("disabled: expected a list of names")
        if len(set(disabled)) != len(disabled):
            raise MalformedFlags("disabled: a name twice")
        try:
            signature = decode_signature(doc["signature"])
        except (TypeError, ValueError) as exc:
            raise MalformedFlags(f"signature: {exc}") from None
        return cls(frozenset(disabled), doc["epoch"], doc["version"], doc["signer"], signature)

    def changed(self, epoch: int, *, disabled: Iterable[str] | None = None) -> FeatureFlags:
        """The next version at ``epoch`` (unsigned): these flags, or ``disabled``."""
        gone = self.disabled if disabled is None else frozenset(disabled)
        version = self.version + 1 if epoch == self.epoch else 1
        return FeatureFlags(gone, epoch, version)

    def sign(self, signer: Signer) -> FeatureFlags:
        unsigned = replace(self, signer=signer.machine_id, signature=None)
        return replace(unsigned, signature=signer.sign(unsigned.signable()))


def newer(a: FeatureFlags, b: FeatureFlags) -> bool:
    """Is ``a`` newer than ``b``?"""
    return (a.epoch, a.version) > (b.epoch, b.version)


def judge(
    flags: FeatureFlags,
    current: FeatureFlags,
    *,
    holder: tuple[str | None, int],
    members: Mapping[str, bytes],
    verify: Verify,
) -> None:
    """Raise unless a member takes ``flags`` over ``current``. ``holder`` is who its
    lease view says holds, at which epoch; ``members`` each member's (and its own)
    Ed25519 public key."""
    public = members.get(flags.signer)
    if public is None or flags.signature is None:
        raise ForgedFlags(f"flags signed by {flags.signer or 'nobody'}, not a member")
    if not verify(public, flags.signable(), flags.signature):
        raise ForgedFlags(f"the flags of {flags.signer} are not signed by its key")
    if (flags.signer, flags.epoch) != holder:
        raise FlagsNotFromHolder(
            f"flags of {flags.signer} at epoch {flags.epoch}; "
            f"this machine sees {holder[0]} hold at epoch {holder[1]}"
        )
    if not newer(flags, current):
        raise StaleFlags(
            f"flags {flags.epoch}.{flags.version} are not newer than "
            f"{current.epoch}.{current.version}"
        )


class FeatureFlagsStore(Protocol):
    """Where a machine keeps the last flags it took or set (baton.stores.features_file)."""

    def load(self) -> FeatureFlags: ...
    def keep(self, flags: FeatureFlags) -> None: ...
