"""POST /api/pair/start, /api/pair/finish and /api/leave: no bearer token. The pairing
code (through SPAKE2) or, for /leave, the leaving machine's signature is the credential.
Rate limited per client address; errors have the usual shape {error, detail}."""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from baton.core import safejson
from baton.core.errors import BadRequest, RateLimited
from baton.core.ratelimit import RateLimiter

#: Per client address: 10 requests at once, then one every 2 s. A joiner needs two.
RATE_PER_S = 0.5
BURST = 10


class PairingServices(Protocol):
    def pair_start(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def pair_finish(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def leave(self, body: dict[str, Any]) -> dict[str, Any]: ...


def json_object() -> dict[str, Any]:
    """The request's JSON object body (BadRequest if it is not one: not JSON, not an
    object, nested too deep; never a 500). Flask's get_json lets RecursionError out."""
    try:
        body = safejson.loads(request.get_data(cache=True)) if request.is_json else None
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {str(exc)[:80]}") from None
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    return body


def blueprint(services: PairingServices, limiter: RateLimiter | None = None) -> Blueprint:
    bp = Blueprint("pairing", __name__, url_prefix="/api")
    limiter = limiter or RateLimiter(RATE_PER_S, BURST)
    lock = threading.Lock()

    @bp.before_request
    def rate_limit() -> None:
        with lock:
            allowed = limiter.allow(request.remote_addr or "?", time.monotonic())
        if not allowed:
            raise RateLimited("too many pairing requests from this address; wait and retry")

    @bp.post("/pair/start")
    def start() -> ResponseReturnValue:
        return jsonify(services.pair_start(json_object()))

    @bp.post("/pair/finish")
    def finish() -> ResponseReturnValue:
        return jsonify(services.pair_finish(json_object()))

    @bp.post("/leave")
    def leave() -> ResponseReturnValue:
        return jsonify(services.leave(json_object()))

    return bp
