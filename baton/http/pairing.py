"""POST /api/pair/start and /api/pair/finish: no token (the pairing code, through SPAKE2,
is the credential), rate limited per client address. The node's answers are the same
shape as every other error: {error, detail}."""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from baton.core.errors import BadRequest, RateLimited
from baton.core.ratelimit import RateLimiter

#: Per client address: 10 requests at once, then one every 2 s. A joiner needs two.
RATE_PER_S = 0.5
BURST = 10


class PairingServices(Protocol):
    def pair_start(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def pair_finish(self, body: dict[str, Any]) -> dict[str, Any]: ...


def json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    return body


def blueprint(services: PairingServices, limiter: RateLimiter | None = None) -> Blueprint:
    bp = Blueprint("pairing", __name__, url_prefix="/api/pair")
    limiter = limiter or RateLimiter(RATE_PER_S, BURST)
    lock = threading.Lock()

    @bp.before_request
    def rate_limit() -> None:
        with lock:
            allowed = limiter.allow(request.remote_addr or "?", time.monotonic())
        if not allowed:
            raise RateLimited("too many pairing requests from this address; wait and retry")

    @bp.post("/start")
    def start() -> ResponseReturnValue:
        return jsonify(services.pair_start(json_object()))

    @bp.post("/finish")
    def finish() -> ResponseReturnValue:
        return jsonify(services.pair_finish(json_object()))

    return bp
