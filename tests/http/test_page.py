"""The status page over the Flask app: the one-time login, the session cookie, what the
page shows and what it refuses."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from baton.api.page import cookie_name
from baton.core.errors import Unavailable
from baton.core.ui_login import CODE_TTL_S, SESSION_TTL_S
from tests.http.samples import CHARLIE, ME
from tests.http.test_app import AUTH, FakeServices

COOKIE = cookie_name(ME)


def sign_in(client: FlaskClient) -> str:
    path = client.post("/api/ui/login", headers=AUTH).get_json()["path"]
    code = path.split("code=", 1)[1]
    r = client.get(path)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    return code


def test_without_a_session_the_page_says_how_to_get_one(client: FlaskClient) -> None:
    for path in ("/", "/ui/view"):
        r = client.get(path)
        assert r.status_code == 401 and "baton ui" in r.get_data(True)
        assert "status" not in r.get_data(True).lower().split("baton ui")[0]
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Cache-Control"] == "no-store"


def test_the_login_url_needs_the_token(client: FlaskClient) -> None:
    assert client.post("/api/ui/login").status_code == 401
    r = client.post("/api/ui/login", headers=AUTH)
    assert r.status_code == 201 and r.get_json()["path"].startswith("/login?code=")


def test_a_code_works_once_and_the_page_then_shows_the_mesh(client: FlaskClient) -> None:
    code = sign_in(client)
    page = client.get("/")
    html = page.get_data(True)
    assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    assert re.search(r'id="holder" data-machine-id="m_a+">alpha<', html)
    assert 'id="epoch">7<' in html and 'id="role" class="role awake">awake<' in html
    assert 'data-kind="unreachable"' in html and "charlie does not answer pings" in html
    assert f'data-machine-id="{CHARLIE}" data-role="standby"' in html
    assert "charlie: 5 turns behind" in html  # the live tail's lag
    assert 'id="pending">3<' in html and 'id="answered">40<' in html
    assert '<script src="/ui/page.js"' in html
    # the code is spent: a second browser (no cookie) is refused with it
    client.delete_cookie(COOKIE)
    again = client.get(f"/login?code={code}")
    assert again.status_code == 403 and "used already or has expired" in again.get_data(True)


def test_the_view_follows_the_status(client: FlaskClient, services: FakeServices) -> None:
    sign_in(client)
    services.view["status"].update(holder="m_bbbbbbbbbbbbbbbb", role="standby", epoch=8)
    html = client.get("/ui/view").get_data(True)
    assert 'data-machine-id="m_bbbbbbbbbbbbbbbb">bravo<' in html and 'id="epoch">8<' in html
    assert "<html" not in html  # a fragment, swapped into the page


def test_expired_codes_and_sessions_and_forged_cookies_are_refused(
    client: FlaskClient, services: FakeServices
) -> None:
    path = client.post("/api/ui/login", headers=AUTH).get_json()["path"]
    services.now += CODE_TTL_S + 1
    assert client.get(path).status_code == 403
    for bad in ("", "x" * 129, "nope", "code-99"):
        assert client.get(f"/login?code={bad}").status_code == 403
    sign_in(client)
    assert client.get("/").status_code == 200
    session = client.get_cookie(COOKIE)
    assert session is not None
    expires, nonce, mac = session.value.split(".")
    for forged in (
        f"{int(expires) + 1}.{nonce}.{mac}",  # a longer life
        f"{expires}.{nonce}.{'0' * len(mac)}",
        f"{expires}.{nonce}",
        "١٢٣." + nonce + "." + mac,  # digits that are not ASCII
        "9" * 300,
    ):
        client.set_cookie(COOKIE, forged)
        assert client.get("/").status_code == 401, forged
    client.set_cookie(COOKIE, session.value)
    assert client.get("/").status_code == 200
    services.now += SESSION_TTL_S + 1
    assert client.get("/").status_code == 401


def test_a_session_opens_the_page_and_nothing_else(client: FlaskClient) -> None:
    sign_in(client)
    for path in ("/api/status", "/api/whoami", "/pool"):
        assert client.get(path).status_code == 401, path
    assert client.post("/api/wakeup", json={}).status_code == 401


def test_what_the_page_shows_is_escaped(client: FlaskClient, services: FakeServices) -> None:
    services.view["status"]["alarms"] = [{"kind": "x", "detail": "<script>alert(1)</script>"}]
    sign_in(client)
    html = client.get("/").get_data(True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_topics_where_they_run_and_why(client: FlaskClient, services: FakeServices) -> None:
    sign_in(client)
    html = client.get("/ui/view").get_data(True)
    assert "the pool is off" in html
    services.view["pool"] = {
        "topics": [
            {"topic": "t1", "nickname": "bravo", "reason": "pinned", "waiting": False},
            {"topic": "t2", "nickname": "alpha", "reason": "placed", "alive": False},
        ],
        "topics_total": 2,
    }
    html = client.get("/ui/view").get_data(True)
    assert re.search(r"<td>t1</td>\s*<td>bravo</td>\s*<td>pinned</td>", html)
    assert 'alpha <span class="no">(not alive)</span>' in html
    services.view["pool"] = {"error": "unavailable", "detail": "the pool did not answer in time"}
    assert "the pool did not answer in time" in client.get("/ui/view").get_data(True)


def test_a_node_that_does_not_answer_is_a_503_the_script_shows(
    client: FlaskClient, services: FakeServices
) -> None:
    sign_in(client)
    services.fail_with = Unavailable("the node did not answer within 5.0 s")
    r = client.get("/ui/view")
    assert r.status_code == 503 and r.get_json()["error"] == "unavailable"


@pytest.mark.parametrize("path", ["/ui/page.js", "/ui/page.css"])
def test_the_script_and_style_are_served(client: FlaskClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200 and len(r.get_data()) > 200
    assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/", "/metrics", "/api/status", "/login?code=x", "/health"])
def test_a_name_that_is_not_this_machine_is_refused(client: FlaskClient, path: str) -> None:
    """DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1."""
    for host in ("evil.example:8420", "evil.example", "[::1", "127.0.0.1.evil.example"):
        r = client.get(path, headers={"Host": host, **AUTH})
        assert r.status_code == 421 and r.get_json()["error"] == "misdirected_request", host
    for host in ("127.0.0.1:8420", "localhost:8420", "[::1]:8420", "LOCALHOST"):
        assert client.get(path, headers={"Host": host, **AUTH}).status_code != 421, host
