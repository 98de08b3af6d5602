"""The UpdateRestartHandshake (sans-IO): a restart after an update is verified to run
the version it was for (docs/DESIGN.md, "Versions").

Theory of operation. Before `baton restart` has the node restart, it writes down what it
expects: the version installed now (the CLI's own, read from disk as it started), the
version the node ran before, and when. The node that starts next reads it (once: it is
removed), judges it against what it runs, and says so in its status: a node that comes
up on the old version (the package was not updated where the node imports it from) or
on yet another one raises an alarm. A node that does not come up at all is the CLI's
to tell (its wait runs out; the supervisor's last error says why). A restart with
nothing updated expects what ran before, and is judged so.

Decoding is strict (a handshake file is this machine's own, but a half-written or
edited one must not be misread): ``from_dict`` raises ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baton.core.versions import VERSION_RE

FIELDS = frozenset({"expected", "before", "asked_at"})


@dataclass(frozen=True)
class RestartOutcome:
    ok: bool
    kind: str  # "updated", "restarted" (nothing to update), "old" or "other"
    detail: str


@dataclass(frozen=True)
class UpdateRestartHandshake:
    """A restart's expectation: come up on ``expected`` (the node ran ``before``)."""

    expected: str
    before: str
    asked_at: float  # wall time (s), for people

    def to_dict(self) -> dict[str, Any]:
        return {"expected": self.expected, "before": self.before, "asked_at": self.asked_at}

    @classmethod
    def from_dict(cls, doc: object) -> UpdateRestartHandshake:
        if not isinstance(doc, Mapping) or set(doc) != FIELDS:
            raise ValueError(f"expected an object with {sorted(FIELDS)}")
        expected, before, at = doc["expected"], doc["before"], doc["asked_at"]
        for name, value in (("expected", expected), ("before", before)):
            if not isinstance(value, str) or VERSION_RE.fullmatch(value) is None:
                raise ValueError(f"{name}: expected a version string")
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise ValueError("asked_at: expected a number")
        return cls(expected, before, float(at))

    def judge(self, running: str) -> RestartOutcome:
        """What the node that came up, running ``running``, makes of it."""
        if running == self.expected:
            kind = "restarted" if running == self.before else "updated"
            said = f"running {running}" + ("" if kind == "restarted" else f" (was {self.before})")
            return RestartOutcome(True, kind, said)
        if running == self.before:
            detail = (
                f"came up on the old version {running}, not {self.expected}: the update is "
                "not where this node imports baton from (its Python, its environment)"
            )
            return RestartOutcome(False, "old", detail)
        return RestartOutcome(
            False, "other", f"came up on {running}, neither {self.expected} nor {self.before}"
        )
