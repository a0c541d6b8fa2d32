"""API keys: with keys configured nothing is reachable without one (checked route by route from
the app's own OpenAPI document), and a key never shows up in an answer, a log or the CLI's
output."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from legato.exceptions import AuthenticationError, ConfigurationError

# distinctive keys, so finding one in any text means it leaked
K1 = "lgk1-" + secrets.token_hex(16)
K2 = "lgk2-" + secrets.token_hex(16)
WRONG = "lgkx-" + secrets.token_hex(16)
KEYS = (K1, K2, WRONG)
UUID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def assert_no_key(text: str) -> None:
    for key in KEYS:
        assert key not in text, "an API key was leaked"
        assert key[5:] not in text, "part of an API key was leaked"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def keyed_app(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    from legato.server.app import create_app
    from legato.settings import get_settings, reset_settings_cache

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    return create_app(get_settings(), services=False)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The app in-process, with two keys; the client sends none of its own."""
    from fastapi.testclient import TestClient

    app = keyed_app(monkeypatch, LEGATO_SERVER_API_KEYS=f"{K1}, {K2}")
    with TestClient(app, base_url="http://t") as c:
        yield c


def operations(client: Any) -> list[tuple[str, str]]:
    """Every (method, path) of the OpenAPI document, path parameters filled in plausibly."""
    r = client.get("/api/openapi.json", headers=bearer(K1))
    assert r.status_code == 200, r.text
    doc = r.json()
    # the document says how to authenticate
    assert doc["components"]["securitySchemes"]["APIKey"]["scheme"] == "bearer"
    out = []
    for path, ops in doc["paths"].items():
        filled = re.sub(r"{(run_id|flow_id)}", UUID, path)
        filled = re.sub(r"{\w+}", "some-name", filled)
        for method in ops:
            if method in ("get", "post", "put", "patch", "delete", "head", "options"):
                out.append((method.upper(), filled))
    return out


REFUSALS = [
    pytest.param({}, "requires an API key", id="no-key"),
    pytest.param(bearer(WRONG), "not accepted", id="wrong-key"),
    pytest.param({"Authorization": "Basic eHl6OnNlY3JldA=="}, "Bearer KEY", id="basic-auth"),
    pytest.param({"Authorization": "Bearer "}, "Bearer KEY", id="empty-bearer"),
    pytest.param({"Authorization": K1}, "Bearer KEY", id="key-without-scheme"),
    pytest.param({"Authorization": f"Token {K1}"}, "Bearer KEY", id="other-scheme"),
    pytest.param({"X-API-Key": K1}, "requires an API key", id="key-in-another-header"),
]


@pytest.mark.parametrize(("headers", "why"), REFUSALS)
def test_every_operation_needs_an_accepted_key(
        client: Any, headers: dict[str, str], why: str) -> None:
    ops = operations(client)
    assert len(ops) >= 25, ops
    # and what is not an operation: the docs, the document itself, unknown paths (the UI's
    # pages ask for a sign-in instead: tests/server/test_ui_auth.py)
    ops += [("GET", "/api/docs"), ("GET", "/api/openapi.json"),
            ("GET", "/api/docs/oauth2-redirect"), ("GET", "/api/no-such-route"),
            ("POST", "/api/flow_runs/"), ("PUT", "/api/flows/")]
    for method, path in ops:
        body = {} if method in ("POST", "PUT", "PATCH") else None
        r = client.request(method, path, json=body, headers=headers)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        detail = r.json()["detail"]
        assert why in detail, (method, path, detail)
        assert_no_key(r.text)
        assert_no_key(str(r.headers))


def test_with_a_key_every_operation_is_reached(client: Any) -> None:
    """The same sweep with a key gets past the check (so the 401s above mean something)."""
    for key in (K1, K2):
        for method, path in operations(client):
            body = {} if method in ("POST", "PUT", "PATCH") else None
            r = client.request(method, path, json=body, headers=bearer(key))
            assert r.status_code != 401 and r.status_code < 500, (method, path, r.text)
    for path in ("/api/docs", "/api/openapi.json", "/"):
        assert client.get(path, headers=bearer(K2)).status_code == 200
    # the scheme's name is case-insensitive, the surrounding blanks do not matter
    assert client.get("/api/health", headers={"Authorization": f"bearer  {K1} "}).json() is True


def test_a_keys_file_of_digests(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    k3 = "lgk3-" + secrets.token_hex(16)
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# the ops team's key\n{hashlib.sha256(k3.encode()).hexdigest()}\n\n"
                         f"{hashlib.sha256(K2.encode()).hexdigest().upper()}  # CI\n")
    app = keyed_app(monkeypatch, LEGATO_SERVER_API_KEYS_FILE=str(keys_file))
    with TestClient(app, base_url="http://t") as c:
        assert c.get("/api/health", headers=bearer(k3)).status_code == 200
        assert c.get("/api/health", headers=bearer(K2)).status_code == 200
        assert c.get("/api/health", headers=bearer(K1)).status_code == 401
        assert c.get("/api/health").status_code == 401
        # the digest itself is not a key
        digest = hashlib.sha256(k3.encode()).hexdigest()
        assert c.get("/api/health", headers=bearer(digest)).status_code == 401


@pytest.mark.parametrize("content", [
    pytest.param(f"{K1}\n", id="a-raw-key-instead-of-its-digest"),
    pytest.param("abc123\n", id="too-short"),
    pytest.param(hashlib.sha256(b"x").hexdigest()[:-1] + "g\n", id="not-hex"),
])
def test_a_malformed_keys_file_stops_the_app_with_a_clear_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# comment\n{hashlib.sha256(b'ok').hexdigest()}\n{content}")
    with pytest.raises(ConfigurationError) as info:
        keyed_app(monkeypatch, LEGATO_SERVER_API_KEYS_FILE=str(keys_file))
    message = str(info.value)
    assert "Line 3" in message and str(keys_file) in message and "SHA-256" in message
    assert "hash-key" in message  # how to make a digest
    assert_no_key(message)  # a raw key pasted into the file is not echoed


def test_a_missing_keys_file_stops_the_app(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(ConfigurationError, match="Cannot read the API keys file"):
        keyed_app(monkeypatch, LEGATO_SERVER_API_KEYS_FILE=str(missing))


def _calls(get: Any) -> None:
    """Good and bad calls; ``get(path, headers)`` makes one."""
    for headers in (bearer(K1), bearer(K2), bearer(WRONG), {"Authorization": f"Basic {K1}"},
                    {}, {"Authorization": f"Bearer {K1}{K2}"}):
        for path in ("/api/health", "/api/flow_runs/" + UUID, "/api/nope"):
            get(path, headers)


def test_keys_never_appear_in_the_logs_in_process(client: Any,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: everything
    for name in ("legato", "legato.server", "uvicorn", "uvicorn.access", "uvicorn.error",
                 "httpx", "httpcore", "fastapi", "starlette"):
        caplog.set_level(logging.DEBUG, logger=name)
    _calls(lambda path, headers: client.get(path, headers=headers))
    # a client speaking another API version is warned about: that warning is logged too
    client.get("/api/health", headers={**bearer(K1), "X-Legato-API-Version": "99.0.0"})
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert_no_key(caplog.text)
    assert_no_key(" ".join(str(r.args) for r in caplog.records))


@pytest.fixture
def keyed_server(start_server: Any) -> Any:
    """A real `legato server start` with keys, logging every request at debug level."""
    return start_server("--access-log", "--log-level", "debug",
                        LEGATO_SERVER_API_KEYS=f"{K1},{K2}")


def test_keys_never_appear_in_a_real_servers_output(keyed_server: Any) -> None:
    _calls(lambda path, headers: httpx.get(keyed_server.url + path, headers=headers, timeout=10))
    # the HTTP client of the SDK and the CLI, with a good and a bad key
    from legato.client.transport import Transport

    Transport(keyed_server.api_url, K1).request("GET", "/health")
    with pytest.raises(AuthenticationError):
        Transport(keyed_server.api_url, WRONG, retries=0).request("GET", "/health")
    keyed_server.stop()  # flush and close its output
    out = keyed_server.output()
    # the access log is on: requests are in the output, keys are not
    assert re.search(r'"GET /api/health HTTP/1\.1" 200', out), out[-2000:]
    assert re.search(r'"GET /api/health HTTP/1\.1" 401', out), out[-2000:]
    assert_no_key(out)


def test_the_http_client_says_a_key_was_refused_without_repeating_it(keyed_server: Any) -> None:
    from legato.client.transport import Transport

    assert Transport(keyed_server.api_url, K2).request("GET", "/health").json() is True
    for key, why in ((WRONG, "not accepted"), (None, "requires an API key")):
        with pytest.raises(AuthenticationError) as info:
            Transport(keyed_server.api_url, key, retries=3).request("GET", "/version")
        assert info.value.status_code == 401
        assert why in str(info.value) and keyed_server.api_url in str(info.value)
        assert_no_key(str(info.value))
        assert_no_key(repr(info.value))


def _profiles(home: Path) -> Path:
    from legato.settings import profiles_path

    path = profiles_path()
    assert path.is_relative_to(home)  # the test's own LEGATO_HOME
    return path


def test_login_stores_url_and_key_in_the_active_profile(keyed_server: Any,
                                                        legato_home: Path) -> None:
    import tomllib
    from typer.testing import CliRunner

    from legato.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["login", "--url", keyed_server.api_url, "--key", K1])
    assert result.exit_code == 0, result.output
    assert keyed_server.api_url in result.output
    assert_no_key(result.output)
    path = _profiles(legato_home)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = tomllib.loads(path.read_text())
    profile = data["profiles"][data.get("active", "default")]
    assert profile["LEGATO_API_URL"] == keyed_server.api_url
    assert profile["LEGATO_API_KEY"] == K1
    # and the settings now use them
    from legato.settings import get_settings, reset_settings_cache

    reset_settings_cache()
    assert get_settings().api_key == K1


def test_login_with_a_wrong_key_fails_clearly_and_stores_nothing(keyed_server: Any,
                                                                 legato_home: Path) -> None:
    from typer.testing import CliRunner

    from legato.cli import app

    path = _profiles(legato_home)
    before = path.read_bytes() if path.exists() else None
    result = CliRunner().invoke(app, ["login", "--url", keyed_server.api_url, "--key", WRONG])
    assert result.exit_code != 0
    assert "not accepted" in result.output and keyed_server.api_url in result.output
    assert_no_key(result.output)
    after = path.read_bytes() if path.exists() else None
    assert after == before
