"""create_chat_app(store, tokens): the bundled chat service, speaking the shape of
Telegram's Bot API so one adapter (baton.channels.botapi) serves both.

Routes:
  GET  /health                          {"ok": true, "service": "baton-chat", "mode"}
  (every /api/* route needs Authorization: Bearer <the user token>; every /bot route
  the bot token: baton.channels.chat_tokens)
  GET  /api/topics                      the topics and their thread ids
  GET  /api/topics/<topic>/messages     the topic's messages in order (unknown: none)
  POST /api/topics/<topic>/messages     post as the user: {"kind"?, "text" | "caption"? |
                                        "emoji"?, "client_id"?} -> 201, the same
                                        client_id again -> 200, same ids
  POST /api/topics/<topic>/messages/<id>/edit   {"text"}: an edited_message update
  GET  /api/sends[?reply_key=K]         every sendMessage attempt and its outcome
  GET  /api/polls                       every getUpdates call and its outcome
  GET|POST /api/faults                  the fault controls (in memory), see Faults
  /bot<token>/getUpdates                offset, limit 1..100, timeout 0..50 s (long poll)
  /bot<token>/sendMessage               Telegram's; fencing mode adds baton_epoch and
                                        baton_reply_key, telegram mode ignores them
  /bot<token>/getReplyStatus            reply_key -> {delivered, message_id} (fencing)
  /bot<token>/setWebhook, deleteWebhook, getWebhookInfo   Telegram's (nothing is pushed)

Invariants:
- Every answer is JSON, errors included (no HTML error page on any route): the Bot API
  routes answer Telegram's ``{ok: false, error_code, description}``, the others baton's
  ``{error, detail}``. Status codes are decided in this module.
- Request bodies are capped at 2 MiB (413). A body that is not UTF-8, not JSON, or
  carries text that is not valid Unicode (a lone surrogate) is refused with 400; nothing
  undecodable is ever stored.
- All state and every decision lives in the ChatStore; this module only checks
  parameters (per the store's mode; a posted message's content with
  chat_shapes.user_message) and maps outcomes to answers.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from baton.channels.chat_params import (
    MAX_ID,
    Refused,
    bot_params,
    int_param,
    json_body,
    object_param,
)
from baton.channels.chat_schema import MAX_TELEGRAM_UNITS, WebhookActive
from baton.channels.chat_shapes import check_unicode, optional_text, user_message, utf16_units
from baton.channels.chat_store import (
    MAX_SEND_CHARS,
    REPLY_KEY,
    TOPIC_NAME,
    ChatClosed,
    ChatRefused,
    ChatStore,
    Superseded,
)
from baton.channels.chat_tokens import TOKEN_SHAPE, ChatTokens
from baton.core.errors import NotFound

log = logging.getLogger("baton.chat")

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_POLL_TIMEOUT_S = 50
CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
MAX_URL_CHARS = 2048


def create_chat_app(store: ChatStore, tokens: ChatTokens) -> Flask:
    """The chat service over ``store``: the Bot API routes take only ``tokens.bot``,
    ``/api/*`` only ``Authorization: Bearer <tokens.user>`` (baton.channels.chat_tokens);
    ``/health`` is open."""
    app = Flask("baton.channels.chat_service")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.register_blueprint(_api(store, tokens))
    app.register_blueprint(_bot(store, tokens))
    _install_errors(app)
    return app


# --- the user's side and inspection -----------------------------------------------------


def _api(store: ChatStore, tokens: ChatTokens) -> Blueprint:
    bp = Blueprint("chat_api", __name__)

    @bp.before_request
    def user_only() -> None:
        if request.path.startswith("/api/") and not tokens.user_ok(
            request.headers.get("Authorization", "")
        ):
            raise Refused(401, "Authorization: Bearer <the user token> is required")

    @bp.get("/health")
    def health() -> ResponseReturnValue:
        return jsonify({"ok": True, "service": "baton-chat", "mode": store.mode})

    @bp.get("/api/topics")
    def topics() -> ResponseReturnValue:
        return jsonify({"topics": store.topics()})

    @bp.get("/api/topics/<topic>/messages")
    def messages(topic: str) -> ResponseReturnValue:
        return jsonify(store.messages(_topic(topic)))

    @bp.post("/api/topics/<topic>/messages")
    def post(topic: str) -> ResponseReturnValue:
        name = _topic(topic)
        body = json_body(required=True)
        client_id = optional_text(body, "client_id")
        posted = store.post_user_message(name, client_id=client_id, **user_message(body))
        answer = {
            "message_id": posted.message_id,
            "topic": posted.topic,
            "thread_id": posted.thread_id,
            "update_id": posted.update_id,
        }
        return jsonify(answer), 201 if posted.created else 200

    @bp.post("/api/topics/<topic>/messages/<int:message_id>/edit")
    def edit(topic: str, message_id: int) -> ResponseReturnValue:
        name = _topic(topic)
        text = json_body(required=True).get("text")
        if not isinstance(text, str) or not text:
            raise Refused(400, "text must be a non-empty string")
        check_unicode(text, "text")
        if message_id > MAX_ID:
            raise Refused(404, f"topic {name!r} has no message {message_id}")
        edited = store.edit_user_message(name, message_id, text)
        answer = {"message_id": message_id, "topic": name, "thread_id": edited.thread_id}
        return jsonify({**answer, "update_id": edited.update_id})

    @bp.get("/api/faults")
    def faults() -> ResponseReturnValue:
        return jsonify(store.faults())

    @bp.post("/api/faults")
    def set_faults() -> ResponseReturnValue:
        return jsonify(store.set_faults(**json_body(required=True)))

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


def _bot(store: ChatStore, tokens: ChatTokens) -> Blueprint:
    bp = Blueprint("chat_bot", __name__)

    @bp.route("/bot<presented>/<method>", methods=["GET", "POST"])
    def bot(presented: str, method: str) -> ResponseReturnValue:
        if not TOKEN_SHAPE.fullmatch(presented) or not tokens.bot_ok(presented):
            raise Refused(401, "Unauthorized")
        handler = _METHODS.get(method)
        if handler is None or (store.mode == "telegram" and method in _FENCING_ONLY):
            raise Refused(404, "Not Found: method not found")
        poller = request.headers.get("X-Baton-Machine", "")[:200]
        return jsonify({"ok": True, **handler(store, bot_params(), poller)})

    return bp


def _get_updates(store: ChatStore, p: dict[str, Any], poller: str) -> dict[str, Any]:
    offset = int_param(p, "offset")
    limit = int_param(p, "limit", 1, 100)
    timeout = int_param(p, "timeout", 0, MAX_POLL_TIMEOUT_S)
    try:
        updates = store.poll(offset, 100 if limit is None else limit, timeout or 0, poller)
    except Superseded:
        raise Refused(409, CONFLICT) from None
    except WebhookActive:
        raise Refused(409, WEBHOOK_CONFLICT) from None
    return {"result": updates}


def _send_message(store: ChatStore, p: dict[str, Any], poller: str) -> dict[str, Any]:
    chat_id = int_param(p, "chat_id", required="Bad Request: chat_id is empty", bad_str=True)
    thread_id = int_param(p, "message_thread_id")
    if thread_id is None:  # the chat has only named topics: there is no "General"
        raise Refused(400, "Bad Request: message thread not found")
    text = p.get("text")
    if not isinstance(text, str) or not text:
        raise Refused(400, "Bad Request: message text is empty")
    telegram = store.mode == "telegram"
    if utf16_units(text) > MAX_TELEGRAM_UNITS if telegram else len(text) > MAX_SEND_CHARS:
        raise Refused(400, "Bad Request: message is too long")
    check_unicode(text, "text")
    reply_to = int_param(p, "reply_to_message_id")
    if reply_to is None and p.get("reply_parameters") is not None:
        params = object_param(p, "reply_parameters")
        empty = "Bad Request: reply message_id is empty"
        reply_to = int_param(params, "message_id", required=empty)
    epoch = None if telegram else int_param(p, "baton_epoch", lo=1)
    reply_key = None if telegram else p.get("baton_reply_key")
    if reply_key is not None and not (
        isinstance(reply_key, str) and REPLY_KEY.fullmatch(reply_key)
    ):
        raise Refused(400, "Bad Request: baton_reply_key must be 64 lowercase hex digits")
    assert chat_id is not None
    sent = store.send(
        chat_id=chat_id,
        thread_id=thread_id,
        text=text,
        reply_to=reply_to,
        epoch=epoch,
        reply_key=reply_key,
        poller=poller,
    )
    if sent.retry_after is not None:
        n = sent.retry_after
        raise Refused(429, f"Too Many Requests: retry after {n}", {"retry_after": n})
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


def _set_webhook(store: ChatStore, p: dict[str, Any], poller: str) -> dict[str, Any]:
    url = p.get("url")
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_URL_CHARS:
        raise Refused(400, f"Bad Request: url must be 1 to {MAX_URL_CHARS} characters")
    check_unicode(url, "url")
    store.set_webhook(url)
    return {"result": True, "description": "Webhook was set"}


def _delete_webhook(store: ChatStore, p: dict[str, Any], poller: str) -> dict[str, Any]:
    was = store.delete_webhook()
    return {"result": True, "description": f"Webhook {'was' if was else 'is already'} deleted"}


def _get_webhook_info(store: ChatStore, p: dict[str, Any], poller: str) -> dict[str, Any]:
    return {"result": store.webhook_info()}


_METHODS = {
    "getUpdates": _get_updates,
    "sendMessage": _send_message,
    "getReplyStatus": _get_reply_status,
    "setWebhook": _set_webhook,
    "deleteWebhook": _delete_webhook,
    "getWebhookInfo": _get_webhook_info,
}
_FENCING_ONLY = frozenset({"getReplyStatus"})  # telegram mode has no such method


# --- errors: always JSON ---------------------------------------------------------------


def _install_errors(app: Flask) -> None:
    @app.errorhandler(Refused)
    def refused(exc: Refused) -> ResponseReturnValue:
        return _error(exc.status, exc.detail, exc.parameters)

    @app.errorhandler(ChatRefused)
    def chat_refused(exc: ChatRefused) -> ResponseReturnValue:
        return _error(400, exc.detail)

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> ResponseReturnValue:
        return _error(404, exc.detail)

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
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}
