"""create_chat_app(store, token): the bundled chat service, speaking the shape of
Telegram's Bot API so one adapter (baton.channels.botapi) serves both.

Routes:
  GET  /health                          {"ok": true, "service": "baton-chat"}
  GET  /api/topics                      the topics and their thread ids
  GET  /api/topics/<topic>/messages     the topic's messages in order (unknown: none)
  POST /api/topics/<topic>/messages     post as the user: {"text", "client_id"?} -> 201,
                                        the same client_id again -> 200, same ids
  GET  /api/sends[?reply_key=K]         every sendMessage attempt and its outcome
  GET  /api/polls                       every getUpdates call and its outcome
  /bot<token>/getUpdates                offset, limit 1..100, timeout 0..50 s (long poll)
  /bot<token>/sendMessage               Telegram's, plus baton_epoch and baton_reply_key
  /bot<token>/getReplyStatus            reply_key -> {delivered, message_id}

Invariants:
- Every answer is JSON, errors included (no HTML error page on any route): the Bot API
  routes answer Telegram's ``{ok: false, error_code, description}``, the others baton's
  ``{error, detail}``. Status codes are decided in this module.
- Request bodies are capped at 2 MiB (413). A body that is not UTF-8, not JSON, or
  carries text that is not valid Unicode (a lone surrogate) is refused with 400; nothing
  undecodable is ever stored.
- All state and every decision lives in the ChatStore; this module only checks
  parameters and maps outcomes to answers.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from baton.channels.chat_store import (
    MAX_SEND_CHARS,
    REPLY_KEY,
    TOPIC_NAME,
    ChatClosed,
    ChatRefused,
    ChatStore,
    Superseded,
)

log = logging.getLogger("baton.chat")

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_POLL_TIMEOUT_S = 50
MAX_ID = 2**53 - 1  # ids stay exact in every JSON reader (and fit SQLite's integers)
TOKEN_SHAPE = re.compile(r"[0-9A-Za-z:_-]{1,100}")
CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)


class Refused(Exception):
    """A request answered with an error; its body shape depends on the route."""

    def __init__(self, status: int, detail: str, parameters: dict[str, Any] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.parameters = parameters


def create_chat_app(store: ChatStore, token: str | None = None) -> Flask:
    """The chat service over ``store``. With ``token``, only that bot token is accepted;
    without, any token of the Bot API's shape is."""
    app = Flask("baton.channels.chat_service")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.register_blueprint(_api(store))
    app.register_blueprint(_bot(store, token))
    _install_errors(app)
    return app


# --- the user's side and inspection -----------------------------------------------------


def _api(store: ChatStore) -> Blueprint:
    bp = Blueprint("chat_api", __name__)

    @bp.get("/health")
    def health() -> ResponseReturnValue:
        return jsonify({"ok": True, "service": "baton-chat"})

    @bp.get("/api/topics")
    def topics() -> ResponseReturnValue:
        return jsonify({"topics": store.topics()})

    @bp.get("/api/topics/<topic>/messages")
    def messages(topic: str) -> ResponseReturnValue:
        return jsonify(store.messages(_topic(topic)))

    @bp.post("/api/topics/<topic>/messages")
    def post(topic: str) -> ResponseReturnValue:
        name = _topic(topic)
        body = _json_body(required=True)
        text, client_id = body.get("text"), body.get("client_id")
        if not isinstance(text, str) or not text:
            raise Refused(400, "text must be a non-empty string")
        if client_id is not None and (not isinstance(client_id, str) or not client_id):
            raise Refused(400, "client_id must be a non-empty string when given")
        _check_unicode(text, "text")
        if client_id is not None:
            _check_unicode(client_id, "client_id")
        posted = store.post_user_message(name, text, client_id)
        answer = {
            "message_id": posted.message_id,
            "topic": posted.topic,
            "thread_id": posted.thread_id,
            "update_id": posted.update_id,
        }
        return jsonify(answer), 201 if posted.created else 200

    @bp.get("/api/sends")
    def sends() -> ResponseReturnValue:
        return jsonify({"sends": store.sends(request.args.get("reply_key"))})

    @bp.get("/api/polls")
    def polls() -> ResponseReturnValue:
        return jsonify({"polls": store.polls(), "waiting": store.waiting_polls})

    return bp


def _topic(name: str) -> str:
    if not TOPIC_NAME.fullmatch(name):
        raise Refused(400, "a topic name is 1 to 64 of A-Z a-z 0-9 _ . -")
    return name


# --- the bot's side: Telegram's Bot API shape ------------------------------------------


def _bot(store: ChatStore, token: str | None) -> Blueprint:
    bp = Blueprint("chat_bot", __name__)

    @bp.route("/bot<presented>/<method>", methods=["GET", "POST"])
    def bot(presented: str, method: str) -> ResponseReturnValue:
        if not TOKEN_SHAPE.fullmatch(presented) or (
            token is not None and not hmac.compare_digest(presented.encode(), token.encode())
        ):
            raise Refused(401, "Unauthorized")
        handler = _METHODS.get(method)
        if handler is None:
            raise Refused(404, "Not Found: method not found")
        poller = request.headers.get("X-Baton-Machine", "")[:200]
        return jsonify({"ok": True, **handler(store, _params(), poller)})

    return bp


def _get_updates(store: ChatStore, p: dict[str, Any], poller: str) -> dict[str, Any]:
    offset = _int(p, "offset")
    limit = _int(p, "limit", 1, 100)
    timeout = _int(p, "timeout", 0, MAX_POLL_TIMEOUT_S)
    try:
        updates = store.poll(offset, 100 if limit is None else limit, timeout or 0, poller)
    except Superseded:
        raise Refused(409, CONFLICT) from None
    return {"result": updates}


def _send_message(store: ChatStore, p: dict[str, Any], poller: str) -> dict[str, Any]:
    chat_id = _int(p, "chat_id", required="Bad Request: chat_id is empty", bad_str=True)
    thread_id = _int(p, "message_thread_id")
    if thread_id is None:  # the chat has only named topics: there is no "General"
        raise Refused(400, "Bad Request: message thread not found")
    text = p.get("text")
    if not isinstance(text, str) or not text:
        raise Refused(400, "Bad Request: message text is empty")
    if len(text) > MAX_SEND_CHARS:
        raise Refused(400, "Bad Request: message is too long")
    _check_unicode(text, "text")
    reply_to = _int(p, "reply_to_message_id")
    if reply_to is None and p.get("reply_parameters") is not None:
        params = _object(p, "reply_parameters")
        reply_to = _int(params, "message_id", required="Bad Request: reply message_id is empty")
    epoch = _int(p, "baton_epoch", lo=1)
    reply_key = p.get("baton_reply_key")
    if reply_key is not None and not (
        isinstance(reply_key, str) and REPLY_KEY.fullmatch(reply_key)
    ):
        raise Refused(400, "Bad Request: baton_reply_key must be 64 lowercase hex digits")
    assert chat_id is not None
    try:
        sent = store.send(
            chat_id=chat_id,
            thread_id=thread_id,
            text=text,
            reply_to=reply_to,
            epoch=epoch,
            reply_key=reply_key,
            poller=poller,
        )
    except ChatRefused as exc:
        raise Refused(400, exc.detail) from None
    if sent.outcome == "stale":
        raise Refused(
            409,
            f"Conflict: stale epoch {epoch}, the chat has seen {sent.highest_epoch}",
            {"baton_highest_epoch": sent.highest_epoch},
        )
    answer: dict[str, Any] = {"result": sent.message}
    if sent.outcome == "repeat":
        answer["baton_repeat"] = True
    return answer


def _get_reply_status(store: ChatStore, p: dict[str, Any], poller: str) -> dict[str, Any]:
    key = p.get("reply_key")
    if not (isinstance(key, str) and REPLY_KEY.fullmatch(key)):
        raise Refused(400, "Bad Request: reply_key must be 64 lowercase hex digits")
    message_id = store.reply_status(key)
    return {"result": {"delivered": message_id is not None, "message_id": message_id}}


_METHODS = {
    "getUpdates": _get_updates,
    "sendMessage": _send_message,
    "getReplyStatus": _get_reply_status,
}


# --- parameters -----------------------------------------------------------------------


def _params() -> dict[str, Any]:
    """The query string, then the form or JSON body on top (as Telegram accepts them)."""
    params: dict[str, Any] = request.args.to_dict()
    if request.method != "POST":
        return params
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        params.update(request.form.to_dict())
    else:
        params.update(_json_body(required=False))
    return params


def _json_body(*, required: bool) -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if not raw.strip() and not required:
        return {}
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8") from None
    except ValueError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise Refused(400, "the body must be a JSON object")
    return doc


def _int(
    p: dict[str, Any],
    name: str,
    lo: int = -MAX_ID,
    hi: int = MAX_ID,
    *,
    required: str | None = None,
    bad_str: bool = False,
) -> int | None:
    """An integer parameter (JSON number or decimal text), None when absent. ``bad_str``:
    a text that is not a number names a chat by username, which this chat has not."""
    value = p.get(name)
    if value is None:
        if required:
            raise Refused(400, required)
        return None
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}", value.strip()):
        value = int(value)
    elif isinstance(value, str) and bad_str:
        raise Refused(400, "Bad Request: chat not found")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Refused(400, f"Bad Request: {name} must be an integer in {lo}..{hi}")
    return value


def _object(p: dict[str, Any], name: str) -> dict[str, Any]:
    value = p[name]
    if isinstance(value, str):  # form encoding carries objects as JSON text
        try:
            value = json.loads(value)
        except ValueError:
            raise Refused(400, f"Bad Request: can't parse {name} JSON object") from None
    if not isinstance(value, dict):
        raise Refused(400, f"Bad Request: {name} must be an object")
    return value


def _check_unicode(text: str, name: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(400, f"Bad Request: {name} must be valid UTF-8 (a lone surrogate)") from None


# --- errors: always JSON ---------------------------------------------------------------


def _install_errors(app: Flask) -> None:
    @app.errorhandler(Refused)
    def refused(exc: Refused) -> ResponseReturnValue:
        return _error(exc.status, exc.detail, exc.parameters)

    @app.errorhandler(ChatClosed)
    def closed(exc: ChatClosed) -> ResponseReturnValue:
        return _error(503, "the chat service is shutting down")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        status = exc.code or 500
        if status == 413:
            return _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        return _error(status, exc.description or exc.name)

    @app.errorhandler(Exception)
    def crashed(exc: Exception) -> ResponseReturnValue:
        log.exception("chat service: %s %s failed", request.method, request.path)
        return _error(500, "internal error")


def _error(
    status: int, detail: str, parameters: dict[str, Any] | None = None
) -> tuple[Response, int]:
    if request.path.startswith("/bot"):
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": detail}
        if parameters:
            body["parameters"] = parameters
    else:
        body = {"error": _ERROR_NAMES.get(status, "error"), "detail": detail}
    return jsonify(body), status


_ERROR_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    500: "internal",
    503: "unavailable",
}
