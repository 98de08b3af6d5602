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
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baton.core import safejson
from baton.core.errors import BadSecret, SecretsCorrupt

NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_VALUE_BYTES = 64 * 1024
MAX_SECRETS = 256


@dataclass(frozen=True, repr=False)
class Secret:
    value: str = ""
    set_by: str = ""  # the machine id
    set_at: float = 0.0  # wall seconds

    def __repr__(self) -> str:  # never the value
        return f"Secret(set_by={self.set_by!r}, set_at={self.set_at!r})"


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
    out = dict(secrets)
    out[name] = Secret(check_value(value), by, at)
    if len(out) > MAX_SECRETS:
        raise BadSecret(f"a store holds at most {MAX_SECRETS} secrets")
    return out


def encode(secrets: Mapping[str, Secret]) -> bytes:
    doc = {
        name: {"value": s.value, "set_by": s.set_by, "set_at": s.set_at}
        for name, s in sorted(secrets.items())
    }
    return json.dumps({"secrets": doc}, separators=(",", ":")).encode()


def decode(data: bytes) -> dict[str, Secret]:
    """The secrets in ``data``; SecretsCorrupt for anything but the document above."""
    try:
        doc: Any = safejson.loads(data)
        rows = doc["secrets"]
        if set(doc) != {"secrets"} or not isinstance(rows, dict) or len(rows) > MAX_SECRETS:
            raise ValueError("not a secrets document")
        out = {}
        for name, row in rows.items():
            if set(row) != {"value", "set_by", "set_at"}:
                raise ValueError(f"{name}: unexpected fields")
            at = row["set_at"]
            if not isinstance(row["set_by"], str) or type(at) not in (int, float):
                raise ValueError(f"{name}: bad fields")
            if not math.isfinite(at):
                raise ValueError(f"{name}: bad time")
            out[check_name(name)] = Secret(check_value(row["value"]), row["set_by"], float(at))
        return out
    except (ValueError, KeyError, TypeError, AttributeError, BadSecret) as exc:
        raise SecretsCorrupt(f"the secrets document does not read: {exc}") from None
