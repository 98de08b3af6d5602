"""The secrets' rules (SecretStore): which names and values a store takes, and the
plain document it seals. Pure; the sealing and the master key are
baton.stores.secret_store's.

- A name is what the agent sees it as, an environment variable: ``[A-Z][A-Z0-9_]*``,
  at most 64 characters, never ``BATON_*`` (the node's own).
- A value is text of 1 to MAX_VALUE_BYTES bytes in UTF-8, without NUL (an environment
  cannot hold one).
- At most MAX_SECRETS secrets. Each remembers who set it and when (``list`` shows
  those, never a value).
- The document is strict JSON: anything else in a file that authenticated is corrupt.

Between machines (SecretSync), every member keeps every secret. Each name's newest
version wins, by ``(set_at, set_by)``; a removal is a version too (a tombstone, with no
value), so it travels like a change. A machine that sets or removes a secret dates the
change after the version it knew, whatever its clock says, so its own change always
wins over what it had. A version dated more than MAX_AHEAD_S ahead of the receiver's
clock is refused (it would win over every honest change for as long). At most
MAX_TOMBSTONES removals are remembered, the oldest forgotten first.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from baton.core import safejson
from baton.core.errors import BadSecret, NoSuchSecret, SecretsCorrupt

NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MACHINE = re.compile(r"m_[a-z2-7]{16}")  # who set it: a machine id
MAX_VALUE_BYTES = 64 * 1024
MAX_SECRETS = 256
MAX_TOMBSTONES = 1024
MAX_AHEAD_S = 3600.0
STEP_S = 0.001  # a change is dated at least this far after the version it replaces
MAX_TIME = 2.0**53  # seconds: a version's time is a number within this


@dataclass(frozen=True, repr=False)
class Secret:
    value: str = ""
    set_by: str = ""  # the machine id
    set_at: float = 0.0  # wall seconds
    deleted: bool = False  # a removal (a tombstone): no value

    @property
    def version(self) -> tuple[float, str]:
        return (self.set_at, self.set_by)

    def __repr__(self) -> str:  # never the value
        gone = ", deleted" if self.deleted else ""
        return f"Secret(set_by={self.set_by!r}, set_at={self.set_at!r}{gone})"


def live(secrets: Mapping[str, Secret]) -> dict[str, Secret]:
    """The secrets that are set (not removed)."""
    return {n: s for n, s in secrets.items() if not s.deleted}


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or name.startswith("BATON_"):
        raise BadSecret(
            f"{str(name)[:80]!r} is not a secret name: use A-Z, 0-9 and _ (an environment "
            "variable's name), at most 64, starting with a letter, not BATON_*"
        )
    return name


def check_value(value: str) -> str:
    if not isinstance(value, str):
        raise BadSecret("a secret's value is text")
    size = len(value.encode("utf-8", "surrogatepass"))
    if not 0 < size <= MAX_VALUE_BYTES or "\0" in value:
        raise BadSecret(f"a secret's value is 1 to {MAX_VALUE_BYTES} bytes without NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadSecret("a secret's value is valid UTF-8 text") from None
    return value


def with_secret(
    secrets: Mapping[str, Secret], name: str, value: str, by: str, at: float
) -> dict[str, Secret]:
    """``secrets`` with ``name`` set (checked); BadSecret past MAX_SECRETS."""
    check_name(name)
    new = Secret(check_value(value), by, _after(secrets.get(name), at))
    return _bounded({**secrets, name: new})


def without_secret(
    secrets: Mapping[str, Secret], name: str, by: str, at: float
) -> dict[str, Secret]:
    """``secrets`` with ``name`` removed (a tombstone); NoSuchSecret if it is not set."""
    known = secrets.get(name)
    if known is None or known.deleted:
        raise NoSuchSecret(f"no secret named {name[:80]!r}")
    return _bounded({**secrets, name: Secret("", by, _after(known, at), deleted=True)})


def taken(
    secrets: Mapping[str, Secret], name: str, theirs: Secret, now: float
) -> dict[str, Secret] | None:
    """``secrets`` with another machine's version of ``name`` if it is newer than the
    one here, else None. BadSecret if it may not be taken at all."""
    check_name(name)
    if not theirs.deleted:
        check_value(theirs.value)
    if not (math.isfinite(theirs.set_at) and abs(theirs.set_at) <= MAX_TIME):
        raise BadSecret(f"{name} is not dated")
    if theirs.set_at > now + MAX_AHEAD_S:
        raise BadSecret(f"{name} is dated more than {MAX_AHEAD_S:g} s ahead of this clock")
    mine = secrets.get(name)
    if mine is not None and _order(theirs) <= _order(mine):
        return None
    return _bounded({**secrets, name: theirs})


def _order(s: Secret) -> tuple[float, str, bool, str]:
    """Versions in order; two with one ``version`` (which no honest machine makes: it
    dates each change after the last) are ordered by content, so every order of
    arrival ends alike."""
    return (s.set_at, s.set_by, s.deleted, s.value)


def _when(raw: Any) -> float:
    """A version's time: a finite number of seconds an IEEE double holds exactly enough
    (ValueError for anything else: a bool, a 400-digit integer, NaN)."""
    if type(raw) is int and abs(raw) <= MAX_TIME:
        return float(raw)
    if type(raw) is float and math.isfinite(raw) and abs(raw) <= MAX_TIME:
        return raw
    raise ValueError("not a time")


def _after(known: Secret | None, at: float) -> float:
    return at if known is None else max(at, known.set_at + STEP_S)


def _bounded(secrets: dict[str, Secret]) -> dict[str, Secret]:
    if len(live(secrets)) > MAX_SECRETS:
        raise BadSecret(f"a store holds at most {MAX_SECRETS} secrets")
    gone = sorted((s.version, n) for n, s in secrets.items() if s.deleted)
    for _, name in gone[: max(0, len(gone) - MAX_TOMBSTONES)]:
        del secrets[name]  # the oldest removals are forgotten first
    return secrets


# --- what machines tell each other ----------------------------------------------------


def digest(secrets: Mapping[str, Secret]) -> dict[str, list[Any]]:
    """Each name's version, no value: what a machine tells its peers it has."""
    return {n: [s.set_at, s.set_by] for n, s in sorted(secrets.items())}


def read_digest(raw: Any) -> dict[str, tuple[float, str]]:
    """A peer's digest, checked; BadSecret for anything else."""
    if not isinstance(raw, dict) or len(raw) > MAX_SECRETS + MAX_TOMBSTONES:
        raise BadSecret("not a digest of secrets")
    out = {}
    for name, version in raw.items():
        if not (isinstance(version, list) and len(version) == 2 and isinstance(version[1], str)):
            raise BadSecret("not a digest of secrets")
        try:
            out[check_name(name)] = (_when(version[0]), version[1])
        except ValueError:
            raise BadSecret("not a digest of secrets") from None
    return out


def newer_here(secrets: Mapping[str, Secret], theirs: Mapping[str, tuple[float, str]]) -> list[str]:
    """The names whose version here is newer than the peer's (or the peer lacks)."""
    return sorted(n for n, s in secrets.items() if n not in theirs or s.version > theirs[n])


def newer_there(secrets: Mapping[str, Secret], theirs: Mapping[str, tuple[float, str]]) -> bool:
    """Whether the peer has a version newer than this machine's of any name."""
    return any(n not in secrets or v > secrets[n].version for n, v in theirs.items())


def to_wire(name: str, secret: Secret) -> bytes:
    """One secret (or removal) as it is sealed to a peer."""
    row = {"name": name, **_row(secret)}
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()


def from_wire(data: bytes) -> tuple[str, Secret]:
    """A secret a peer sealed to this machine; BadSecret for anything else."""
    try:
        row: Any = safejson.loads(data)
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            raise ValueError("not a secret")
        name = row.pop("name")
        return check_name(name), _secret(name, row)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadSecret(f"not a secret: {exc}") from None


def _row(s: Secret) -> dict[str, Any]:
    if s.deleted:
        return {"deleted": True, "set_by": s.set_by, "set_at": s.set_at}
    return {"value": s.value, "set_by": s.set_by, "set_at": s.set_at}


def _secret(name: str, row: Any) -> Secret:
    """A stored or sent row, checked: ValueError (or BadSecret) for anything else."""
    if not isinstance(row, dict) or set(row) not in ({"value", "set_by", "set_at"}, _GONE):
        raise ValueError(f"{name}: unexpected fields")
    by = row["set_by"]
    if not isinstance(by, str) or not MACHINE.fullmatch(by):
        raise ValueError(f"{name}: bad fields")
    at = _when(row["set_at"])
    if "deleted" in row:
        if row["deleted"] is not True:
            raise ValueError(f"{name}: bad fields")
        return Secret("", by, at, deleted=True)
    return Secret(check_value(row["value"]), by, at)


_GONE = {"deleted", "set_by", "set_at"}


def encode(secrets: Mapping[str, Secret]) -> bytes:
    doc = {name: _row(s) for name, s in sorted(secrets.items())}
    return json.dumps({"secrets": doc}, separators=(",", ":")).encode()


def decode(data: bytes) -> dict[str, Secret]:
    """The secrets in ``data``; SecretsCorrupt for anything but the document above."""
    try:
        doc: Any = safejson.loads(data)
        rows = doc["secrets"]
        if set(doc) != {"secrets"} or not isinstance(rows, dict):
            raise ValueError("not a secrets document")
        out = {check_name(name): _secret(name, row) for name, row in rows.items()}
        if len(live(out)) > MAX_SECRETS or len(out) > MAX_SECRETS + MAX_TOMBSTONES:
            raise ValueError("too many secrets")
        return out
    except (ValueError, KeyError, TypeError, AttributeError, BadSecret) as exc:
        raise SecretsCorrupt(f"the secrets document does not read: {exc}") from None


class SecretKeeper(Protocol):
    """The port SecretSyncActor works through (baton.stores.secret_store.SecretStore)."""

    def entries(self) -> dict[str, Secret]:
        """Every secret and removal remembered."""

    def take(self, name: str, theirs: Secret, now: float) -> bool:
        """Keep another machine's version if it is newer; whether it was."""

    def rotate(self, removed: tuple[str, ...] = ()) -> str | None:
        """A new master key (recording ``removed`` as handled); its id."""

    def rotated_for(self) -> tuple[str, ...]:
        """The removed machines the master key was rotated for."""

    def stamp(self) -> tuple[int, int, int] | None:
        """A value that changes whenever the store does."""
