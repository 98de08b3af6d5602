"""create_app(settings, services): the Flask app of one node.

Routes:
  GET  /health         no auth; liveness and machine id
  GET  /metrics        no auth; Prometheus's text format (baton.api.prometheus)
  GET  /api/whoami     bearer token
  GET  /api/machines   bearer token
  POST /api/machines   bearer token; add a peer's card (until pairing exists)
  GET  /api/status     bearer token
  POST /api/pair/session  bearer token; mint a pairing code (`baton pair`)
  GET  /api/pair/session  bearer token; its state and a joiner waiting for the SAS check
  POST /api/pair/decide   bearer token; the operator's yes or no (`baton pair --verify`)
  POST /api/machines/remove  bearer token; revoke a member (`baton machines remove`)
  POST /api/pool       bearer token; {enabled}: the pool on or off (the holder only: 409)
  GET  /pool           bearer token; the pool: its machines, their load and health, the
                       holder (503 while it is off; a standby asks the holder, as below)
  GET  /pool/machines/<id or nickname>, GET /pool/placement?topic=T   one machine; where
                       a topic runs and why (pinned, placed, unowned)
  POST /pool/transfer  bearer token; {topic, to, confirm?}: move a topic (the planner's
                       refusals: 404 unknown_machine/topic, 409 already_there or
                       needs_confirm, 429 rate_limited)
  POST /pool/unpin     bearer token; {topic}: placed by load again
  POST /pool/verify, GET /session-pool/e2e-results   bearer token; the pool's own
                       end-to-end check: a probe through every machine, and its results
  POST /api/pair/start, /api/pair/finish, /api/leave   no token, rate limited
                       (baton.api.pairing): the code or a signature is the credential
  POST /api/ui/login   bearer token; a one-time login path for the status page (`baton ui`)
  GET  /, /login, /ui/...   the status page (baton.api.page), behind its session cookie

create_door_app(settings, services): the door, what other machines need from the network
(settings.listen; the operator API above stays on its own, loopback, port):
  GET  /health         no auth; {ok, machine_id} (a joiner checks it talks to a node)
  POST /api/pair/start, /api/pair/finish, /api/leave   as above
"""

from __future__ import annotations

import ipaddress
from typing import Any, Protocol
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue

from baton.api import errors, page, pairing, prometheus
from baton.core.errors import BadRequest, MisdirectedRequest, Unauthorized
from baton.core.settings import Settings


class Services(Protocol):
    """What the app needs from the node (implemented by baton.node.services.NodeServices)."""

    def token_ok(self, presented: str) -> bool: ...
    def health(self) -> dict[str, Any]: ...
    def whoami(self) -> dict[str, Any]: ...
    def machines(self) -> list[dict[str, Any]]: ...
    def add_machine(self, card: dict[str, Any]) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...
    def metrics(self) -> dict[str, Any]: ...
    def count(self, name: str) -> None: ...
    def pair_session(self, verify: bool) -> dict[str, Any]: ...
    def pair_view(self) -> dict[str, Any]: ...
    def pair_decide(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def remove_machine(self, name: str, reason: str) -> dict[str, Any]: ...
    def leave(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def pair_start(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def pair_finish(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def send_message(self, topic: str, text: str, wait_s: float) -> dict[str, Any]: ...
    def wakeup(self, force: bool) -> dict[str, Any]: ...
    def pool_ask(self, op: str, **args: Any) -> Any: ...
    def set_pool(self, enabled: bool) -> dict[str, Any]: ...
    def features(self) -> dict[str, Any]: ...
    def set_feature(self, name: str, enabled: bool) -> dict[str, Any]: ...
    def ui_login(self) -> dict[str, Any]: ...
    def ui_redeem(self, code: str) -> str | None: ...
    def ui_session_ok(self, session: str) -> bool: ...
    def ui_view(self) -> dict[str, Any]: ...


def _public(services: Services) -> Blueprint:
    bp = Blueprint("public", __name__)

    @bp.get("/health")
    def health() -> ResponseReturnValue:
        return jsonify(services.health())

    @bp.get("/metrics")
    def metrics() -> ResponseReturnValue:
        return Response(prometheus.render(services.metrics()), content_type=prometheus.CONTENT_TYPE)

    return bp


def _operator(name: str, prefix: str, services: Services) -> Blueprint:
    """A blueprint whose every route needs the node's API token."""
    bp = Blueprint(name, __name__, url_prefix=prefix)

    @bp.before_request
    def require_token() -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or not services.token_ok(token.strip()):
            raise Unauthorized("send the node's API token as 'Authorization: Bearer <token>'")

    return bp


def _pool(services: Services) -> Blueprint:
    bp = _operator("pool", "/pool", services)

    @bp.get("")
    def pool() -> ResponseReturnValue:
        return jsonify(services.pool_ask("pool"))

    @bp.get("/machines/<machine>")
    def machine(machine: str) -> ResponseReturnValue:
        return jsonify(services.pool_ask("machine", machine=machine))

    @bp.get("/placement")
    def placement() -> ResponseReturnValue:
        topic = request.args.get("topic")
        if not topic:
            raise BadRequest("expected ?topic=TOPIC")
        return jsonify(services.pool_ask("placement", topic=topic))

    @bp.post("/transfer")
    def transfer() -> ResponseReturnValue:
        body = pairing.json_object()
        topic, to, confirm = body.get("topic"), body.get("to"), body.get("confirm", False)
        if set(body) - {"topic", "to", "confirm"}:
            raise BadRequest("expected {topic, to, confirm?}")
        return jsonify(services.pool_ask("transfer", topic=topic, to=to, confirm=confirm))

    @bp.post("/verify")
    def verify() -> ResponseReturnValue:
        return jsonify(services.pool_ask("verify"))

    @bp.post("/unpin")
    def unpin() -> ResponseReturnValue:
        body = pairing.json_object()
        if set(body) != {"topic"}:
            raise BadRequest("expected {topic}")
        return jsonify(services.pool_ask("unpin", topic=body["topic"]))

    return bp


def _session_pool(services: Services) -> Blueprint:
    bp = _operator("session_pool", "/session-pool", services)

    @bp.get("/e2e-results")
    def e2e_results() -> ResponseReturnValue:
        return jsonify(services.pool_ask("e2e"))

    return bp


def _api(services: Services) -> Blueprint:
    bp = _operator("api", "/api", services)

    @bp.post("/pool")
    def set_pool() -> ResponseReturnValue:
        enabled = pairing.json_object().get("enabled")
        if not isinstance(enabled, bool):
            raise BadRequest("expected {enabled}: true or false")
        return jsonify(services.set_pool(enabled))

    @bp.get("/features")
    def features() -> ResponseReturnValue:
        return jsonify(services.features())

    @bp.post("/features")
    def set_feature() -> ResponseReturnValue:
        body = pairing.json_object()
        name, enabled = body.get("name"), body.get("enabled")
        if set(body) != {"name", "enabled"} or not isinstance(name, str):
            raise BadRequest("expected {name, enabled}: a component and true or false")
        if not isinstance(enabled, bool):
            raise BadRequest("enabled: expected true or false")
        return jsonify(services.set_feature(name, enabled))

    @bp.post("/ui/login")
    def ui_login() -> ResponseReturnValue:
        return jsonify(services.ui_login()), 201

    @bp.get("/whoami")
    def whoami() -> ResponseReturnValue:
        return jsonify(services.whoami())

    @bp.get("/machines")
    def machines() -> ResponseReturnValue:
        return jsonify(services.machines())

    @bp.post("/machines")
    def add_machine() -> ResponseReturnValue:
        return jsonify(services.add_machine(pairing.json_object())), 201

    @bp.post("/machines/remove")
    def remove_machine() -> ResponseReturnValue:
        body = pairing.json_object()
        name, reason = body.get("name"), body.get("reason", "removed by the awake machine")
        if not isinstance(name, str) or not isinstance(reason, str) or len(reason) > 200:
            raise BadRequest("expected {name, reason?}: a nickname or machine id, a short reason")
        return jsonify(services.remove_machine(name, reason))

    @bp.get("/pair/session")
    def pair_view() -> ResponseReturnValue:
        return jsonify(services.pair_view())

    @bp.post("/pair/decide")
    def pair_decide() -> ResponseReturnValue:
        return jsonify(services.pair_decide(pairing.json_object()))

    @bp.post("/pair/session")
    def pair_session() -> ResponseReturnValue:
        verify = pairing.json_object().get("verify", False)
        if not isinstance(verify, bool):
            raise BadRequest("verify must be true or false")
        return jsonify(services.pair_session(verify)), 201

    @bp.get("/status")
    def status() -> ResponseReturnValue:
        return jsonify(services.status())

    @bp.post("/send")
    def send() -> ResponseReturnValue:
        body = pairing.json_object()
        topic, text, wait_s = body.get("topic"), body.get("text"), body.get("wait_s", 10)
        if not isinstance(topic, str) or not isinstance(text, str):
            raise BadRequest("expected {topic, text, wait_s?}: strings, and seconds to wait")
        if isinstance(wait_s, bool) or not isinstance(wait_s, int | float) or not 0 <= wait_s <= 60:
            raise BadRequest("wait_s must be a number of seconds from 0 to 60")
        view = services.send_message(topic, text, float(wait_s))
        return jsonify(view), 201 if view["status"] == "posted" else 202

    @bp.post("/wakeup")
    def wakeup() -> ResponseReturnValue:
        body = pairing.json_object()
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise BadRequest("expected {force?}: true or false")
        return jsonify(services.wakeup(force))

    return bp


def _flask(name: str, settings: Settings, services: Services) -> Flask:
    # no static folder: Flask would serve <root path>/static, and for a name that is no
    # module the root path is the working directory (an attacker's read on the door)
    app = Flask(name, static_folder=None)
    app.config["BATON_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.install(app, services.count)
    return app


def host_ok(host: str, configured: str) -> bool:
    """The operator API answers only under an address, ``localhost`` or its own
    configured host: a page elsewhere that has its name resolve to 127.0.0.1 (DNS
    rebinding) reaches it under that name and is refused before any route runs (the
    status page and /metrics included)."""
    try:
        name = urlsplit(f"//{host}").hostname or ""
    except ValueError:  # a malformed bracket
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name in ("localhost", configured.lower())
    return True


def create_app(settings: Settings, services: Services) -> Flask:
    app = _flask("baton", settings, services)

    @app.before_request
    def refuse_other_names() -> None:
        if not host_ok(request.host, settings.http.host):
            raise MisdirectedRequest(f"this node does not answer as {request.host[:100]!r}")

    app.register_blueprint(_public(services))
    app.register_blueprint(_api(services))
    app.register_blueprint(_pool(services))
    app.register_blueprint(_session_pool(services))
    app.register_blueprint(pairing.blueprint(services))
    app.register_blueprint(page.blueprint(services))
    return app


def create_door_app(settings: Settings, services: Services) -> Flask:
    app = _flask("baton-door", settings, services)

    @app.get("/health")
    def health() -> ResponseReturnValue:
        answer = services.health()
        return jsonify({"ok": answer["ok"], "machine_id": answer["machine_id"]})

    app.register_blueprint(pairing.blueprint(services))
    return app
