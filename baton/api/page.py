"""The status page, served by the node on its operator API (loopback).

  GET /            the page (a session cookie; without one, how to get one: 401)
  GET /login?code= trades a one-time code from `baton ui` for the session cookie, once
  GET /ui/view     the page's body, rendered anew: the page's script fetches it every
                   UPDATE_MS and swaps it in, so the page follows the node without reload
  GET /ui/page.js, /ui/page.css   the script and the style (no secrets: no session)

Server-rendered (Jinja2, escaped); the script only fetches and swaps. The cookie is
HttpOnly and SameSite=Strict, named after the machine (cookies do not tell ports
apart, and several nodes may serve on one host). A session reads and never acts: no
route that changes anything takes the cookie (those take the API token), so a forged
request from another site has nothing to gain. Every answer forbids framing and
caching, and the code in the login URL is sent nowhere else (no referrer).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from flask import Blueprint, Response, redirect, render_template_string, request
from flask.typing import ResponseReturnValue

from baton.api import page_assets
from baton.api.page_view import page_view

log = logging.getLogger("baton.http")

UPDATE_MS = 2000

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class PageServices(Protocol):
    def health(self) -> dict[str, Any]: ...
    def ui_redeem(self, code: str) -> str | None: ...
    def ui_session_ok(self, session: str) -> bool: ...
    def ui_view(self) -> dict[str, Any]: ...
    def count(self, name: str) -> None: ...


def cookie_name(machine_id: str) -> str:
    return f"baton_session_{machine_id}"


def blueprint(services: PageServices) -> Blueprint:
    bp = Blueprint("page", __name__)

    def name() -> str:
        return cookie_name(services.health()["machine_id"])

    def signed_in() -> bool:
        session = request.cookies.get(name(), "")
        return bool(session) and services.ui_session_ok(session)

    @bp.after_request
    def headers(response: Response) -> Response:
        response.headers.update(HEADERS)
        return response

    def body() -> str | None:
        """The page's body, rendered now; None without a session."""
        if not signed_in():
            services.count("ui.refused")
            return None
        view = page_view(services.ui_view(), time.time())
        return render_template_string(page_assets.VIEW, v=view)

    @bp.get("/")
    def page() -> ResponseReturnValue:
        if (now := body()) is None:
            return _html(page_assets.SIGN_IN, 401)
        return _html(render_template_string(page_assets.PAGE, body=now, every=UPDATE_MS))

    @bp.get("/ui/view")
    def view() -> ResponseReturnValue:
        return _html(page_assets.SIGN_IN, 401) if (now := body()) is None else _html(now)

    @bp.get("/login")
    def login() -> ResponseReturnValue:
        code = request.args.get("code", "")
        session = services.ui_redeem(code) if 0 < len(code) <= 128 else None
        if session is None:
            log.info("status page: a login code was refused", extra={"limit_key": "ui.login"})
            return _html(page_assets.USED, 403)
        response = redirect("/", code=303)
        response.set_cookie(name(), session, httponly=True, samesite="Strict", path="/")
        return response

    @bp.get("/ui/page.js")
    def script() -> ResponseReturnValue:
        return Response(page_assets.SCRIPT, content_type="text/javascript; charset=utf-8")

    @bp.get("/ui/page.css")
    def style() -> ResponseReturnValue:
        return Response(page_assets.STYLE, content_type="text/css; charset=utf-8")

    return bp


def _html(text: str, status: int = 200) -> Response:
    return Response(text, status=status, content_type="text/html; charset=utf-8")
