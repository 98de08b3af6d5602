"""EtcdLeaseStore: the LeaseStore contract on an etcd cluster, for meshes that outgrow a
git remote. It speaks etcd v3's JSON gateway (``/v3/kv/range``, ``/v3/kv/txn``) over
plain HTTP with the standard library, so no etcd client package is needed.

The record is the value of one key (default ``baton/lease``; a path in the URL sets a
prefix). The token is the key's ``mod_revision``. CAS is one transaction: compare
``mod_revision == expected`` (or ``create_revision == 0`` when nothing is expected), then
put the new record, else read the current one: etcd decides, atomically. A renewal
overwrites the key (etcd's own history is compacted by its operator, as usual).
``etcd+http://host:2379[/prefix]`` in ``lease_store`` selects it.

Errors: a refused connection, a timeout, an HTTP error or an answer that is not etcd's
is a LeaseStoreError (the outcome of a write is then unknown), never a lost CAS.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from typing import Any

from baton.core import safejson
from baton.core.errors import ConfigError, LeaseStoreError
from baton.core.lease_record import LeaseRecord
from baton.core.lease_store import CasResult, Stored, decode_stored

SCHEME = "etcd+"
KEY = "baton/lease"
_REVISION = re.compile(r"[0-9]{1,18}")  # an int64 revision, ascii digits only
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def etcd_endpoint(lease_store: str) -> tuple[str, str]:
    """(base URL, key) of an ``etcd+http://host:port[/prefix]`` setting."""
    if not lease_store.startswith(SCHEME + "http://"):
        raise ConfigError("lease_store", f"{lease_store!r} is not an etcd+http:// URL")
    rest = lease_store[len(SCHEME + "http://") :]
    host, _, prefix = rest.partition("/")
    if not host:
        raise ConfigError("lease_store", f"{lease_store!r} names no etcd host")
    key = f"{prefix.strip('/')}/{KEY}" if prefix.strip("/") else KEY
    return f"http://{host}", key


class EtcdLeaseStore:
    def __init__(self, base_url: str, key: str = KEY, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout_s = timeout_s

    def describe(self) -> str:
        return f"etcd {self.base_url} key {self.key}"

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base_url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=self.timeout_s) as response:
                answer = safejson.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise LeaseStoreError(f"etcd {self.base_url}{path}: HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:  # refused, timed out, or not JSON
            raise LeaseStoreError(f"etcd {self.base_url}{path}: {exc}") from None
        if not isinstance(answer, dict) or "header" not in answer:
            raise LeaseStoreError(f"etcd {self.base_url}{path}: not an etcd answer")
        return answer

    def _stored(self, range_answer: dict[str, Any]) -> Stored:
        kvs = range_answer.get("kvs") or []
        if not kvs:
            return Stored(None)
        try:
            kv = kvs[0]
            token = str(int(kv["mod_revision"]))
            data = base64.b64decode(kv.get("value", ""), validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise LeaseStoreError(f"etcd returned a key it cannot describe: {exc!r}") from None
        return decode_stored(token, data)

    def read(self) -> Stored:
        return self._stored(self._call("/v3/kv/range", {"key": _b64(self.key.encode())}))

    def cas(self, expected: str | None, new: LeaseRecord) -> CasResult:
        if expected is not None and not _REVISION.fullmatch(expected):
            return CasResult(False, self.read())  # not a revision of ours: it cannot match
        key = _b64(self.key.encode())
        if expected is None:
            compare = {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        else:
            compare = {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": expected}
        answer = self._call(
            "/v3/kv/txn",
            {
                "compare": [compare],
                "success": [{"request_put": {"key": key, "value": _b64(new.encode())}}],
                "failure": [{"request_range": {"key": key}}],
            },
        )
        if answer.get("succeeded") is True:
            revision = str(int(answer["header"]["revision"]))
            return CasResult(True, Stored(revision, new))
        try:
            current = answer["responses"][0]["response_range"]
        except (KeyError, IndexError, TypeError):
            raise LeaseStoreError("etcd's failed transaction did not say what it holds") from None
        return CasResult(False, self._stored(current))
