"""The pool's durable state (sans-IO): whether the pool is on, the pins and the
placements, as the holder keeps them and the standbys mirror them; the
TopicPlacementPinStore port (docs/DESIGN.md, "The pool").

Theory of operation. Only the holder changes the pool's state; every change makes a new
**version** under the holder's lease epoch (``term``). A standby keeps the newest state
it was sent, ordered by (term, version), so a new holder starts from the last state its
predecessor replicated, and a deposed holder's late change (a lower term) never
overwrites a newer holder's. ``to_json`` / ``from_json`` are the state on the wire and in
status: ``from_json`` decodes strictly (a peer's bytes), refusing with PoolRefused.

Invariants:
- A PoolState that exists is well-formed: term, version and epochs integers in
  [0, MAX_EPOCH], a pin's time a number within MAX_AT,
  every pin and placement keyed by its own topic, topics and machine ids non-empty
  strings of at most MAX_ID_CHARS, at most MAX_TOPICS topics.
- ``PoolState.from_json(s.to_json()) == s``.
- ``newer(a, b)`` is a strict order on (term, version).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from baton.core.errors import PoolRefused
from baton.core.pool_placement import Pin, Placement, Reason

MAX_TOPICS = 100_000
MAX_ID_CHARS = 256
MAX_EPOCH = 2**63 - 1  # SQLite's integers, and the wire's epochs
MAX_AT = 2.0**53  # seconds: far past any clock, and exact in a float


@dataclass(frozen=True)
class PoolState:
    enabled: bool = False
    pins: Mapping[str, Pin] = field(default_factory=dict)
    placements: Mapping[str, Placement] = field(default_factory=dict)
    term: int = 0
    version: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise PoolRefused("enabled: expected true or false")
        for name in ("term", "version"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EPOCH:
                raise PoolRefused(f"{name}: expected an integer in [0, {MAX_EPOCH}]")
        if len(self.pins) + len(self.placements) > MAX_TOPICS:
            raise PoolRefused(f"more than {MAX_TOPICS} topics")
        for topic, pin in self.pins.items():
            if not isinstance(pin, Pin) or pin.topic != topic:
                raise PoolRefused(f"pin of {topic!r}: not a pin of that topic")
            _ids(topic, pin.machine_id, pin.by)
            at = pin.at
            if (
                isinstance(at, bool)
                or not isinstance(at, int | float)
                or not -MAX_AT <= at <= MAX_AT
            ):
                raise PoolRefused(f"pin of {topic!r}: at is not a time")
        for topic, placed in self.placements.items():
            if not isinstance(placed, Placement) or placed.topic != topic:
                raise PoolRefused(f"placement of {topic!r}: not a placement of that topic")
            _ids(topic, *([] if placed.machine_id is None else [placed.machine_id]))
            epoch = placed.epoch
            if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= MAX_EPOCH:
                raise PoolRefused(f"placement of {topic!r}: epoch is not a count")
            if not isinstance(placed.waiting, bool) or not isinstance(placed.reason, Reason):
                raise PoolRefused(f"placement of {topic!r}: malformed")

    def changed(
        self,
        term: int,
        *,
        enabled: bool | None = None,
        pins: Mapping[str, Pin] | None = None,
        placements: Mapping[str, Placement] | None = None,
    ) -> PoolState:
        """The next state of the holder of ``term``: its version one up (from 1 in a
        new term)."""
        return PoolState(
            self.enabled if enabled is None else enabled,
            dict(self.pins if pins is None else pins),
            dict(self.placements if placements is None else placements),
            term,
            self.version + 1 if term == self.term else 1,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "term": self.term,
            "version": self.version,
            "pins": [[p.topic, p.machine_id, p.at, p.by] for p in self.pins.values()],
            "placements": [
                [p.topic, p.machine_id, p.reason.value, p.epoch, p.waiting]
                for p in self.placements.values()
            ],
        }

    @classmethod
    def from_json(cls, doc: object) -> PoolState:
        """Decode strictly: exactly the fields of to_json, each checked."""
        if not isinstance(doc, dict) or set(doc) != _FIELDS:
            raise PoolRefused(f"pool state: expected exactly the fields {sorted(_FIELDS)}")
        pins, placements = doc["pins"], doc["placements"]
        if not isinstance(pins, list) or not isinstance(placements, list):
            raise PoolRefused("pool state: pins and placements are lists")
        if len(pins) + len(placements) > MAX_TOPICS:
            raise PoolRefused(f"more than {MAX_TOPICS} topics")
        try:
            decoded_pins = {r[0]: Pin(*r) for r in map(_row(4), pins)}
            decoded = {
                r[0]: Placement(r[0], r[1], _reason(r[2]), r[3], r[4])
                for r in map(_row(5), placements)
            }
        except (TypeError, ValueError) as exc:
            raise PoolRefused(f"pool state: {exc}") from None
        if len(decoded_pins) != len(pins) or len(decoded) != len(placements):
            raise PoolRefused("pool state: a topic twice")
        return cls(doc["enabled"], decoded_pins, decoded, doc["term"], doc["version"])


_FIELDS = frozenset({"enabled", "term", "version", "pins", "placements"})


def _row(n: int) -> Any:
    def check(row: object) -> list[Any]:
        if not isinstance(row, list) or len(row) != n:
            raise ValueError(f"expected rows of {n} values")
        return row

    return check


def _reason(value: object) -> Reason:
    if not isinstance(value, str) or value not in _REASONS:
        raise ValueError(f"a reason is one of {sorted(_REASONS)}")
    return Reason(value)


_REASONS = frozenset(r.value for r in Reason)


def _ids(*values: object) -> None:
    for value in values:
        if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
            raise PoolRefused(f"expected a name of 1 to {MAX_ID_CHARS} characters")


def newer(a: PoolState, b: PoolState) -> bool:
    """Whether ``a`` is a later state than ``b``."""
    return (a.term, a.version) > (b.term, b.version)


class TopicPlacementPinStore(Protocol):
    """The pool's state on disk, a port. Adapters: SqlitePoolStore (``data/pool.sqlite``)
    and MemoryPoolStore (the twin); both pass tests/contract/test_pool_store.py.

    Atomicity: each method is one durable transaction; when it raises, nothing changed.
    Errors: PoolError when the store cannot be read or written (PoolCorrupt for a file
    that is not ours; it is left untouched). After close() every method but close
    raises PoolError."""

    def load(self) -> PoolState:
        """The state held (the empty one, pool off, when nothing was ever kept)."""
        ...

    def keep(self, state: PoolState) -> bool:
        """Keep ``state`` if it is newer than the one held (``newer``); whether it was."""
        ...

    def close(self) -> None:
        """Release the store; calling it again does nothing."""
        ...
