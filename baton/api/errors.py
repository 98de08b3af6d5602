"""The one place where errors become HTTP status codes and JSON bodies {error, detail}."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from baton.core import errors as e

log = logging.getLogger("baton.http")

STATUS: list[tuple[type[e.BatonError], int]] = [
    (e.Unauthorized, 401),
    (e.MisdirectedRequest, 421),
    (e.WrongCode, 403),
    (e.NoPairingSession, 404),
    (e.PairingExpired, 410),
    (e.PairingBurned, 410),
    (e.PairingConsumed, 409),
    (e.PairingRefused, 403),
    (e.PairingError, 400),
    (e.PeerFault, 403),
    (e.RateLimited, 429),
    (e.NotFound, 404),
    (e.NicknameTaken, 409),
    (e.AlreadyRunning, 409),
    (e.WakeupFailed, 409),
    (e.PoolNotHolder, 409),
    (e.FeatureNotHolder, 409),
    (e.PoolMoveConflict, 409),
    (e.InvalidCard, 400),
    (e.InvalidNickname, 400),
    (e.BadRequest, 400),
    (e.ConfigError, 400),
    (e.Unavailable, 503),
    (e.NodeNotRunning, 503),
]


def status_for(exc: e.BatonError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(error: str, detail: str, status: int) -> ResponseReturnValue:
    return jsonify({"error": error, "detail": detail}), status


def install(app: Flask, count: Callable[[str], None] = lambda name: None) -> None:
    """Every refused request is answered {error, detail}, logged and counted as
    ``http.refused.<error code>`` (a 5xx as ``http.failed.<code>``)."""

    @app.errorhandler(e.BatonError)
    def _baton(exc: e.BatonError) -> ResponseReturnValue:
        status = status_for(exc)
        if status >= 500:
            log.error("%s: %s", exc.code, exc.detail)
            count(f"http.failed.{exc.code}")
        else:
            log.info(
                "refused %s %s: %s: %s",
                request.method,
                request.path,
                exc.code,
                exc.detail,
                extra={"limit_key": exc.code},  # one kind's flood hides no other kind
            )
            count(f"http.refused.{exc.code}")
        return error_body(exc.code, exc.detail, status)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> ResponseReturnValue:
        name = (exc.name or "error").lower().replace(" ", "_")
        return error_body(name, exc.description or "", exc.code or 500)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        # the traceback goes to the log; the client, who may be anyone (the pairing
        # routes have no token), learns nothing of the inside
        log.exception("unhandled error in HTTP view %s %s", request.method, request.path)
        count("http.failed.internal_error")
        return error_body("internal_error", "an unexpected error; see the node's log", 500)
