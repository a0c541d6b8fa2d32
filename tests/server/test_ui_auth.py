"""The UI with API keys: no page, fragment or action without signing in with a key; the
session is a signed cookie holding no key; actions only from this server's own pages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.server.test_auth import K1, K2, WRONG, assert_no_key, keyed_app

ORIGIN = {"Origin": "http://t"}
PAGES = ["/", "/?window=7d", "/runs", "/runs?state=Failed", "/flows", "/deployments",
         "/work-pools", "/concurrency", "/blocks", "/blocks/catalog", "/notifications",
         f"/runs/{'0' * 8}-0000-0000-0000-{'0' * 12}",
         f"/runs/{'0' * 8}-0000-0000-0000-{'0' * 12}/logs"]
ACTIONS = [f"/runs/{'0' * 8}-0000-0000-0000-{'0' * 12}/cancel",
           f"/runs/{'0' * 8}-0000-0000-0000-{'0' * 12}/retry",
           "/deployments/x/run", "/deployments/x/schedules"]


@pytest.fixture
def ui(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    app = keyed_app(monkeypatch, LEGATO_SERVER_API_KEYS=f"{K1}, {K2}")
    with TestClient(app, base_url="http://t", follow_redirects=False) as c:
        yield c


def sign_in(ui: Any, key: str, next_: str = "/") -> Any:
    return ui.post("/login", data={"key": key, "next": next_}, headers=ORIGIN)


def test_without_a_session_every_page_asks_to_sign_in(ui: Any) -> None:
    for path in PAGES:
        r = ui.get(path)
        assert r.status_code == 303, (path, r.status_code)
        assert r.headers["location"].startswith("/login?next="), r.headers["location"]
    # the live tail's fragment answers 401 (the page's script then reloads to sign in)
    r = ui.get(PAGES[-1], headers={"X-Legato-Fragment": "1"})
    assert r.status_code == 401
    for path in ACTIONS:
        r = ui.post(path, data={}, headers=ORIGIN)
        assert r.status_code == 401, (path, r.status_code)
    # the login page and the stylesheet are reachable (they show nothing of the history)
    assert ui.get("/login").status_code == 200
    assert ui.get("/static/legato.css").status_code == 200


def test_a_wrong_key_is_refused_and_a_right_one_opens_every_page(ui: Any) -> None:
    r = sign_in(ui, WRONG)
    assert r.status_code == 401 and "not accepted" in r.text
    assert "legato_session" not in r.cookies
    assert_no_key(r.text)

    r = sign_in(ui, K2, next_="/runs?state=Failed")
    assert r.status_code == 303 and r.headers["location"] == "/runs?state=Failed"
    cookie = r.cookies["legato_session"]
    assert K2 not in cookie and K1 not in cookie  # the cookie carries no key
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    for path in PAGES[:-2]:
        page = ui.get(path)
        assert page.status_code == 200, (path, page.status_code)
        assert "Sign out" in page.text
    # the API itself still wants its bearer key, session or not
    assert ui.get("/api/health").status_code == 401

    # signing out ends it
    assert ui.post("/logout", headers=ORIGIN).status_code == 303
    ui.cookies.clear()
    assert ui.get("/runs").status_code == 303


def test_a_forged_or_stale_cookie_is_refused(ui: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    good = sign_in(ui, K1).cookies["legato_session"]
    nonce, expires, sig = good.split(".")
    for bad in (f"{nonce}.{int(expires) + 10**6}.{sig}", f"{nonce}x.{expires}.{sig}",
                "garbage", f"{nonce}.{expires}.{'0' * 64}"):
        ui.cookies.clear()
        ui.cookies.set("legato_session", bad)
        assert ui.get("/").status_code == 303, bad
    # a session of a server with other keys is no session here
    from fastapi.testclient import TestClient

    other = keyed_app(monkeypatch, LEGATO_SERVER_API_KEYS="a-completely-different-key")
    with TestClient(other, base_url="http://t", follow_redirects=False) as c:
        c.cookies.set("legato_session", good)
        assert c.get("/").status_code == 303


def test_actions_come_only_from_this_servers_pages(ui: Any) -> None:
    """A page of another site cannot make a signed-in browser act (cancel, retry, run)."""
    sign_in(ui, K1)
    for headers in ({}, {"Origin": "http://evil.example"},
                    {"Referer": "http://evil.example/page"}, {"Origin": "null"}):
        r = ui.post(ACTIONS[0], data={}, headers=headers)
        assert r.status_code == 403, (headers, r.status_code)
        assert "page of this Legato server" in r.text
    # the login form itself too
    assert ui.post("/login", data={"key": K1}, headers={"Origin": "http://evil.example"}
                   ).status_code == 403


def test_next_never_leaves_the_server(ui: Any) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        r = sign_in(ui, K1, next_=target)
        assert r.status_code == 303 and r.headers["location"] == "/", target


def test_without_keys_there_is_no_sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    monkeypatch.delenv("LEGATO_SERVER_API_KEYS", raising=False)
    app = keyed_app(monkeypatch)
    with TestClient(app, base_url="http://t", follow_redirects=False) as c:
        r = c.get("/")
        assert r.status_code == 200 and "Sign out" not in r.text
        assert c.get("/login?next=/runs").headers["location"] == "/runs"
        # forged actions are refused even without keys
        assert c.post(ACTIONS[0], data={}, headers={"Origin": "http://evil.example"}
                      ).status_code == 403
