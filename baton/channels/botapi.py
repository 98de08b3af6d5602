"""BotApiChannel: the Channel port over Telegram's Bot API shape, for the bundled chat
service (``local``, fencing) and Telegram (``telegram``, no fencing). Standard library only.
Parsing the updates a poll returns is baton.channels.updates' job (re-exported here).

Invariants:
- Every request has a deadline for the whole exchange, the response body included, and
  goes out without any proxy from the environment (the token is in the URL). Error
  details never contain the token.
- A send returns an outcome only when the sink said what happened; when it did not
  (timeout, connection lost, 5xx, an answer that makes no sense) it raises ChannelError.
  NotDelivered only when nothing can have been delivered: the connection was refused
  or the host is unknown (the request never went out), or the sink answered 429
  (RateLimited, with its ``retry_after``; Telegram delivers nothing on a 429).
- Without fencing (Telegram) no baton_* parameter is ever sent, delivered() is None and
  post_user_message raises ChannelUnsupported.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from baton.adapters.metrics import Counters
from baton.channels.base import (
    ChannelError,
    ChannelRejected,
    ChannelUnsupported,
    NotDelivered,
    OutboundReply,
    PollConflict,
    RateLimited,
    SendOutcome,
    Update,
    WebhookActive,
)
from baton.channels.updates import is_int, parse_update, parse_updates, valid_unicode
from baton.core import safejson

# The parsing functions are part of this module's interface (callers import them from here).
__all__ = [
    "MAX_POLL_WAIT_S",
    "MAX_RESPONSE_BYTES",
    "MAX_RETRY_AFTER_S",
    "POLL_MARGIN_S",
    "BotApiChannel",
    "parse_update",
    "parse_updates",
    "valid_unicode",
]

# Never hand the bot token (it is in the URL) to an HTTP proxy named in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
POLL_MARGIN_S = 1.0  # on top of the adapter's timeout and the long poll's
MAX_POLL_WAIT_S = 50  # the longest long poll the Bot API allows
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_RETRY_AFTER_S = 3600  # retry_after is held to 1 s .. 1 h (missing or odd: 1 s)
# Failures at connect time: the request surely never reached the sink.
_NEVER_SENT = (ConnectionRefusedError, socket.gaierror)


# --- the adapter ------------------------------------------------------------------------


class BotApiChannel:
    """The Channel port over HTTP. ``fencing``: the sink is the bundled chat service, which
    keeps the highest epoch and knows reply keys."""

    def __init__(
        self,
        name: str,
        base_url: str,
        token: str,
        *,
        fencing: bool,
        poller_id: str = "",
        timeout_s: float = 10.0,
        counters: Counters | None = None,
        user_token: str | None = None,
    ) -> None:
        self.name = name
        self._user_token = user_token  # the bundled chat service's /api/* (post_user_message)
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.fencing = fencing
        self.poller_id = poller_id
        self.timeout_s = timeout_s
        self.counters = counters

    def poll(self, offset: int | None, timeout_s: float) -> list[Update]:
        wait = max(0, min(MAX_POLL_WAIT_S, int(timeout_s)))
        params: dict[str, Any] = {"limit": 100, "timeout": wait}
        if offset is not None:
            params["offset"] = offset
        status, doc = self._bot("getUpdates", params, self.timeout_s + wait + POLL_MARGIN_S)
        if status == 409:
            description = _description(doc, status)
            if "webhook" in description.lower():
                self._count("webhook")
                raise WebhookActive(f"{self.name}: getUpdates: {description}")
            self._count("conflict")
            raise PollConflict(f"{self.name}: getUpdates: {description}")
        result = self._ok("getUpdates", status, doc).get("result")
        if not isinstance(result, list):
            raise self._fail("bad_response", "getUpdates: the result is not a list")
        return parse_updates(result, self.name, self.counters)

    def send(self, reply: OutboundReply) -> SendOutcome:
        params: dict[str, Any] = {"chat_id": reply.chat_id, "text": reply.text}
        if reply.thread_id:
            params["message_thread_id"] = reply.thread_id
        if reply.reply_to:
            # A reply whose message was deleted is still sent (else it would never be).
            params["reply_parameters"] = {
                "message_id": reply.reply_to,
                "allow_sending_without_reply": True,
            }
        if self.fencing:
            params["baton_epoch"] = reply.epoch
            params["baton_reply_key"] = reply.reply_key
        status, doc = self._bot("sendMessage", params, self.timeout_s)
        if status == 409 and self.fencing:
            highest = _dig(doc, "parameters", "baton_highest_epoch")
            if is_int(highest):
                return SendOutcome("stale", highest_epoch=highest)
        result = self._ok("sendMessage", status, doc).get("result")
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if not is_int(message_id):
            raise self._fail("bad_response", "sendMessage: no message_id in the result")
        repeat = self.fencing and doc.get("baton_repeat") is True
        return SendOutcome("repeat" if repeat else "accepted", message_id=message_id)

    def delivered(self, reply_key: str) -> bool | None:
        if not self.fencing:
            return None
        status, doc = self._bot("getReplyStatus", {"reply_key": reply_key}, self.timeout_s)
        answer = self._ok("getReplyStatus", status, doc).get("result")
        delivered = answer.get("delivered") if isinstance(answer, dict) else None
        if not isinstance(delivered, bool):
            raise self._fail("bad_response", "getReplyStatus: no delivered flag in the result")
        return delivered

    def post_user_message(self, topic: str, text: str, client_id: str) -> int:
        if not self.fencing:
            raise ChannelUnsupported(f"{self.name}: cannot post a message as the user")
        if not self._user_token:
            raise ChannelUnsupported(
                f"{self.name}: posting as the user needs the chat service's user token "
                "(machine/chat-user-token or BATON_CHAT_USER_TOKEN)"
            )
        path = f"/api/topics/{urllib.parse.quote(topic, safe='')}/messages"
        body = {"text": text, "client_id": client_id}
        auth = {"Authorization": f"Bearer {self._user_token}"}
        status, doc = self._request(path, body, self.timeout_s, headers=auth)
        if status not in (200, 201):
            detail = doc.get("detail") if isinstance(doc, dict) else None
            kind = "server_error" if status >= 500 else "refused"
            raise self._fail(kind, f"posting to {topic}: HTTP {status}: {detail or doc!r}")
        message_id = doc.get("message_id") if isinstance(doc, dict) else None
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise self._fail("bad_response", f"posting to {topic}: no message_id in the answer")
        return message_id

    def check(self, timeout_s: float) -> str:
        """Does the Bot API answer and take our token, with no webhook set (a webhook
        makes every poll fail)? What it found; ChannelError saying what is wrong."""
        status, doc = self._bot("getWebhookInfo", {}, timeout_s)
        url = _dig(self._ok("getWebhookInfo", status, doc), "result", "url")
        if url:
            raise self._fail("webhook", f"a webhook is set ({url}): polling would conflict")
        return f"{self.name} answers getWebhookInfo; no webhook set"

    # --- HTTP -----------------------------------------------------------------------

    def _bot(self, method: str, params: dict[str, Any], timeout: float) -> tuple[int, Any]:
        return self._request(f"/bot{self._token}/{method}", params, timeout, label=method)

    def _ok(self, method: str, status: int, doc: Any) -> dict[str, Any]:
        """The body of a successful Bot API answer, else ChannelError saying why."""
        if status >= 500:
            raise self._fail("server_error", f"{method}: {_description(doc, status)}")
        if status == 429:  # "too many requests": nothing was delivered; wait as told
            self._count("rate_limited")
            wait = _dig(doc, "parameters", "retry_after")
            wait = float(min(max(wait, 1), MAX_RETRY_AFTER_S)) if is_int(wait) else 1.0
            detail = f"{self.name}: {method}: {_description(doc, status)}"
            raise RateLimited(detail, wait)
        if status >= 400:
            error = self._fail("refused", f"{method}: {_description(doc, status)}")
            if status == 409:  # a conflict: try again later
                raise error
            raise ChannelRejected(error.detail)
        if not isinstance(doc, dict) or doc.get("ok") is not True:
            raise self._fail("bad_response", f"{method}: HTTP {status} without ok: true")
        return doc

    def _request(
        self,
        path: str,
        body: Any,
        timeout: float,
        label: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """POST ``body`` as JSON; (status, decoded JSON body). Raises ChannelError when no
        answer came within ``timeout`` or the answer is not JSON (5xx: it says so)."""
        label = label or path
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "X-Baton-Machine": self.poller_id,
                **(headers or {}),
            },
        )
        deadline = time.monotonic() + timeout
        try:
            try:
                response = _OPENER.open(request, timeout=timeout)
            except urllib.error.HTTPError as exc:
                response = exc
            with response:
                status = int(response.status or 0)
                raw = _read_all(response, deadline) if response.fp is not None else b""
        except urllib.error.URLError as exc:
            reason = exc.reason
            detail = f"{label}: cannot reach {self.base_url}: {reason}"
            if isinstance(reason, _NEVER_SENT):  # the request never went out
                self._count("unreachable")
                raise NotDelivered(f"{self.name}: {detail}") from None
            kind = "timeout" if isinstance(reason, TimeoutError) else "unreachable"
            raise self._fail(kind, detail) from None
        except TimeoutError:
            raise self._fail("timeout", f"{label}: no answer within {timeout:.1f} s") from None
        except _ResponseTooLarge:
            raise self._fail("bad_response", f"{label}: the answer is too large") from None
        except (OSError, http.client.HTTPException) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            raise self._fail("unreachable", f"{label}: connection failed: {detail}") from None
        try:
            text, replaced = raw.decode("utf-8"), False
        except UnicodeDecodeError:  # undecodable bytes become U+FFFD rather than stall us
            text, replaced = raw.decode("utf-8", "replace"), True
        try:
            doc = safejson.loads(text)
        except ValueError:
            kind = "server_error" if status >= 500 else "bad_response"
            raise self._fail(kind, f"{label}: HTTP {status}, and the body is not JSON") from None
        if replaced:
            self._inc("channel.replaced_text")
        return status, doc

    def _fail(self, kind: str, detail: str) -> ChannelError:
        self._count(kind)
        return ChannelError(f"{self.name}: {detail}")

    def _count(self, kind: str) -> None:
        self._inc(f"channel.errors.{kind}")

    def _inc(self, name: str) -> None:
        if self.counters is not None:
            self.counters.inc(name)


class _ResponseTooLarge(Exception):
    pass


def _read_all(response: Any, deadline: float) -> bytes:
    """The whole body, or TimeoutError once ``deadline`` passes: a server that trickles
    bytes holds us at most one socket timeout past the deadline."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError
        chunk = response.read1(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _ResponseTooLarge
        chunks.append(chunk)


def _dig(doc: Any, *names: str) -> Any:
    for name in names:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(name)
    return doc


def _description(doc: Any, status: int) -> str:
    text = _dig(doc, "description")
    return f"HTTP {status}: {text}" if isinstance(text, str) else f"HTTP {status}"
