"""The status page's login, as Jupyter's: `baton ui` asks the node (with the API token)
for a one-time code and prints a URL with it; the browser trades the code, once, within
CODE_TTL_S, for a session cookie, and the page is served to that cookie alone.

- A code is kept only as its SHA-256 and is gone once used or expired; at most
  MAX_CODES wait at once (the oldest is dropped first).
- A session is ``<expiry>.<nonce>.<mac>``: an HMAC-SHA256 of expiry and nonce under a key
  the node derives from its API token (``session_key``). Nothing is kept per session, so
  a session outlives a restart of the node, and ends with its expiry or a new token.

Randomness and time come in as arguments (the core does no I/O).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict

CODE_TTL_S = 120.0
SESSION_TTL_S = 12 * 3600.0
MAX_CODES = 16


def session_key(api_token: str) -> bytes:
    """The key sessions are signed with: the API token's, for this use alone."""
    return hmac.new(api_token.encode(), b"baton status page session", hashlib.sha256).digest()


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class UiLogins:
    """One node's waiting codes, and the check of a session cookie."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._codes: OrderedDict[str, float] = OrderedDict()  # digest -> expires at (s)

    def mint(self, code: str, now_s: float) -> float:
        """Remember ``code`` (random, from the caller) for one use; its expiry."""
        self._drop_expired(now_s)
        while len(self._codes) >= MAX_CODES:
            self._codes.popitem(last=False)
        expires = now_s + CODE_TTL_S
        self._codes[_digest(code)] = expires
        return expires

    def redeem(self, code: str, nonce: str, now_s: float) -> str | None:
        """A session for a waiting code (which is then gone), or None."""
        self._drop_expired(now_s)
        if self._codes.pop(_digest(code), None) is None:
            return None
        expires = int(now_s + SESSION_TTL_S)
        return f"{expires}.{nonce}.{self._mac(expires, nonce)}"

    def session_ok(self, session: str, now_s: float) -> bool:
        expires, _, rest = session.partition(".")
        nonce, _, mac = rest.partition(".")
        if len(session) > 256 or not (expires.isascii() and expires.isdigit() and nonce and mac):
            return False
        return int(expires) > now_s and hmac.compare_digest(mac, self._mac(int(expires), nonce))

    def waiting(self) -> int:
        return len(self._codes)

    def _mac(self, expires: int, nonce: str) -> str:
        return hmac.new(self._key, f"{expires}.{nonce}".encode(), hashlib.sha256).hexdigest()

    def _drop_expired(self, now_s: float) -> None:
        for digest in [d for d, until in self._codes.items() if until <= now_s]:
            del self._codes[digest]
