"""ZAP 1.0 (ZeroMQ RFC 27) decisions for the wire's CURVE ROUTER. No I/O.

A request is ``[version, request_id, domain, address, identity, mechanism,
*credentials]``; the reply is ``[version, request_id, status_code,
status_text, user_id, metadata]``.

Invariants:
- 200 only for version "1.0", domain "baton", mechanism CURVE and a 32-byte
  client key that is in the allow-list; the user id is then that key's
  machine id, which libzmq attaches to every frame as "User-Id".
- Everything else gets 400 (or 500 for a request we cannot parse) with an
  empty user id, and a refusal reason for the caller to count and log.
- A reply is always produced, because a REP socket must answer every request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"baton"
ZAP_VERSION = b"1.0"


def zap_reply(
    request: Sequence[bytes], allowed: Mapping[bytes, str]
) -> tuple[list[bytes], str | None]:
    """Decide a ZAP request: (reply frames, refusal reason or None if admitted)."""
    request_id = request[1] if len(request) > 1 else b""
    if len(request) < 6 or request[0] != ZAP_VERSION:
        return _reply(request_id, b"500", b"bad ZAP request"), "malformed ZAP request"
    domain, mechanism, credentials = request[2], request[5], request[6:]
    if domain != ZAP_DOMAIN:
        return _reply(request_id, b"400", b"unknown domain"), f"unknown ZAP domain {domain!r}"
    if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
        return _reply(request_id, b"400", b"CURVE required"), f"mechanism {mechanism!r}"
    machine_id = allowed.get(credentials[0])
    if machine_id is None:
        refusal = f"key {credentials[0].hex()[:16]}... not in allow-list"
        return _reply(request_id, b"400", b"unknown key"), refusal
    return _reply(request_id, b"200", b"OK", machine_id.encode("ascii")), None


def _reply(request_id: bytes, code: bytes, text: bytes, user_id: bytes = b"") -> list[bytes]:
    return [ZAP_VERSION, request_id, code, text, user_id, b""]
