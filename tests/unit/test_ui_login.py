"""The status page's login: a code works once and only in its time; a session is the
node's signature on its expiry, under a key of its API token."""

from __future__ import annotations

from baton.core.ui_login import CODE_TTL_S, MAX_CODES, SESSION_TTL_S, UiLogins, session_key

T0 = 1_000_000.0


def test_a_code_is_good_once() -> None:
    logins = UiLogins(session_key("token"))
    logins.mint("abc", T0)
    session = logins.redeem("abc", "n1", T0 + 1)
    assert session is not None and logins.session_ok(session, T0 + 2)
    assert logins.redeem("abc", "n2", T0 + 2) is None
    assert logins.waiting() == 0


def test_a_code_expires() -> None:
    logins = UiLogins(session_key("token"))
    logins.mint("abc", T0)
    assert logins.redeem("abc", "n", T0 + CODE_TTL_S) is None
    assert logins.waiting() == 0


def test_only_the_newest_codes_wait() -> None:
    logins = UiLogins(session_key("token"))
    for n in range(MAX_CODES + 3):
        logins.mint(f"code{n}", T0 + n)
    assert logins.waiting() == MAX_CODES
    assert logins.redeem("code0", "n", T0 + 50) is None  # the oldest were dropped
    assert logins.redeem(f"code{MAX_CODES + 2}", "n", T0 + 50) is not None


def test_a_session_ends_and_belongs_to_its_token() -> None:
    logins = UiLogins(session_key("token"))
    logins.mint("abc", T0)
    session = logins.redeem("abc", "n", T0)
    assert session is not None
    assert logins.session_ok(session, T0 + SESSION_TTL_S - 1)
    assert not logins.session_ok(session, T0 + SESSION_TTL_S)
    assert not UiLogins(session_key("another token")).session_ok(session, T0)
    # a new node process with the same token takes it (nothing is kept per session)
    assert UiLogins(session_key("token")).session_ok(session, T0 + 1)


def test_malformed_sessions_are_refused() -> None:
    logins = UiLogins(session_key("token"))
    for bad in ("", "...", "1.2", "x.y.z", "²³.n.mac", "1" * 300, "-5.n.mac", "5..mac"):
        assert not logins.session_ok(bad, T0), bad
