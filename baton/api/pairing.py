"""POST /api/pair/start, /api/pair/finish and /api/leave: no bearer token. The pairing
code (through SPAKE2) or, for /leave, the leaving machine's signature is the credential.
Errors have the usual shape {error, detail}.

- Rate limited per client address and, so that many addresses do not add up, across
  all of them (``GLOBAL_RATE_PER_S``, ``GLOBAL_BURST``); /leave has buckets of its own.
  A flood can keep a joiner waiting (it tries again for a minute), not let anyone in.
- A stranger learns nothing of the session's state from a refused start: no session,
  an expired one, a used one, one out of attempts and a malformed SPAKE2 message are all
  one answer (403 ``pairing_refused``), after the same SPAKE2 work; the operator sees
  the state (GET /api/pair/session). A finish is told why it lost (a race: "consumed")
  only once its key confirmation proved the code.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from baton.core import safejson
from baton.core.errors import BadRequest, PairingError, PairingRefused, RateLimited
from baton.core.ratelimit import RateLimiter

log = logging.getLogger("baton.http")

#: Per client address: 10 requests at once, then one every 2 s. A joiner needs two.
RATE_PER_S = 0.5
BURST = 10
#: Across every address: 30 at once, then 2 a second.
GLOBAL_RATE_PER_S = 2.0
GLOBAL_BURST = 30
REFUSED = (
    "wrong code, or no pairing is open with it here (none was started, it expired, "
    "it was used, or it used up its attempts); run `baton pair` on the awake machine again"
)


class DoorServices(Protocol):
    """What the door's no-token routes need from the node: pairing and leaving."""

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


def blueprint(
    services: DoorServices,
    limiter: RateLimiter | None = None,
    overall: RateLimiter | None = None,
) -> Blueprint:
    bp = Blueprint("pairing", __name__, url_prefix="/api")
    # pairing and leaving are limited apart: a flood of pairing starts (which can keep a
    # joiner waiting: it tries again) never stops a member from leaving
    buckets = {
        "pair": (limiter or RateLimiter(RATE_PER_S, BURST),
                 overall or RateLimiter(GLOBAL_RATE_PER_S, GLOBAL_BURST)),
        "leave": (RateLimiter(RATE_PER_S, BURST), RateLimiter(GLOBAL_RATE_PER_S, GLOBAL_BURST)),
    }  # fmt: skip
    lock = threading.Lock()

    @bp.before_request
    def rate_limit() -> None:
        now = time.monotonic()
        per_address, across = buckets["leave" if request.path.endswith("/leave") else "pair"]
        with lock:
            allowed = per_address.allow(request.remote_addr or "?", now)
            allowed = allowed and across.allow("*", now)
        if not allowed:
            raise RateLimited("too many pairing requests; wait and retry")

    @bp.post("/pair/start")
    def start() -> ResponseReturnValue:
        body = json_object()
        try:
            return jsonify(services.pair_start(body))
        except PairingError as exc:  # before the joiner has shown it knows the code, no
            # refusal says more than another: none, expired, used, burned, malformed
            log.info("pairing start refused: %s", exc.code, extra={"limit_key": exc.code})
            raise PairingRefused(REFUSED) from None

    @bp.post("/pair/finish")
    def finish() -> ResponseReturnValue:
        return jsonify(services.pair_finish(json_object()))

    @bp.post("/leave")
    def leave() -> ResponseReturnValue:
        return jsonify(services.leave(json_object()))

    return bp
