"""Blocks over the HTTP API: the routes' answers for good and bad input, and the guarantee that no
secret value is readable in the database, API listings, CLI output or logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from legato import flow, get_run_logger
from legato.blocks.core import Block
from legato.blocks.fields import SecretDict
from legato.client.factory import close_clients, get_client
from legato.settings import get_settings, reset_settings_cache

LEGATO = str(Path(sys.executable).parent / "legato")


class VaultCreds(Block):
    _block_type_name = "Vault Creds"
    token: SecretStr
    info: SecretDict | None = None
    user: str = "svc"


class VaultBucket(Block):
    _block_type_name = "Vault Bucket"
    bucket: str
    creds: VaultCreds


def _register(api: Any) -> None:
    for cls in (VaultCreds, VaultBucket):
        r = api.post("/block_types/", json={"block_type": cls.block_type_info(),
                                            "block_schema": cls.block_schema_info()})
        assert r.status_code == 200, r.text


def _doc(name: str, slug: str, data: dict[str, Any], refs: dict[str, str] | None = None
         ) -> dict[str, Any]:
    return {"name": name, "block_type_slug": slug, "data": data, "references": refs or {}}


def _count(api: Any) -> int:
    return len(api.post("/block_documents/filter", json={}).json())


def test_block_routes(api: Any) -> None:
    _register(api)
    r = api.post("/block_documents/", json=_doc("c", "vault-creds", {"token": "t-1"}))
    assert r.status_code == 201, r.text
    creds = r.json()
    assert creds["data"] == {"token": "********"}
    r = api.post("/block_documents/", json=_doc("b", "vault-bucket", {"bucket": "bk"},
                                                {"creds": creds["id"]}))
    assert r.status_code == 201, r.text
    got = api.get("/block_types/slug/vault-bucket/block_documents/name/b").json()
    assert got["data"] == {"bucket": "bk"}
    assert got["references"]["creds"]["data"]["token"] == "********"
    clear = api.get("/block_types/slug/vault-bucket/block_documents/name/b",
                    params={"include_secrets": "true"}).json()
    assert clear["references"]["creds"]["data"]["token"] == "t-1"
    assert api.get(f"/block_documents/{creds['id']}").json()["name"] == "c"
    listed = api.post("/block_documents/filter", json={"block_type_slug": "vault-creds"}).json()
    assert [d["name"] for d in listed] == ["c"]
    types = [t["slug"] for t in api.post("/block_types/filter").json()]
    assert {"vault-creds", "vault-bucket", "secret", "string"} <= set(types)
    schemas = api.post("/block_schemas/filter", json={"block_type_slug": "vault-creds"}).json()
    assert schemas[0]["fields"]["secret_fields"] == ["info.*", "token"]


def test_bad_block_input_leaves_the_store_as_it_was(api: Any) -> None:
    _register(api)
    creds = api.post("/block_documents/", json=_doc("c", "vault-creds", {"token": "t"})).json()
    before = _count(api)

    r = api.post("/block_documents/", json=_doc("x", "no-such-type", {}))
    assert r.status_code == 404 and "Unknown block type 'no-such-type'" in r.json()["detail"]
    r = api.post("/block_documents/", json=_doc("x", "vault-creds", {"token": 5}))
    assert r.status_code == 422
    assert "token: expected type 'string'" in r.json()["detail"]
    r = api.post("/block_documents/", json=_doc("x", "vault-bucket", {"bucket": "b"}))
    assert r.status_code == 422 and "'creds' is required" in r.json()["detail"]
    r = api.post("/block_documents/", json=_doc("Bad Name", "vault-creds", {"token": "t"}))
    assert r.status_code == 422 and "Invalid block name" in r.json()["detail"]
    r = api.post("/block_documents/", json=_doc("c", "vault-creds", {"token": "t2"}))
    assert r.status_code == 409 and "overwrite" in r.json()["detail"]
    missing = "01a20000-0000-7000-8000-000000000000"
    r = api.post("/block_documents/", json=_doc("b", "vault-bucket", {"bucket": "b"},
                                                {"creds": missing}))
    assert r.status_code == 422 and "no longer exists" in r.json()["detail"]
    r = api.post("/block_documents/", json=_doc("b", "vault-bucket", {"bucket": "b"},
                                                {"creds": creds["id"]}))
    assert r.status_code == 201
    r = api.delete(f"/block_documents/{creds['id']}")
    assert r.status_code == 409 and "vault-bucket/b" in r.json()["detail"]
    r = api.get("/block_types/slug/vault-creds/block_documents/name/nope")
    assert r.status_code == 404 and "'c'" in r.json()["detail"]
    assert _count(api) == before + 1
    clear = api.get("/block_types/slug/vault-creds/block_documents/name/c",
                    params={"include_secrets": "true"}).json()
    assert clear["data"]["token"] == "t"


SECRET = "tok-Zq81-never-shown"
SECRET_IN_DICT = "pk-Wv27-never-shown"


@flow(log_prints=True)
def uses_the_block() -> str:
    bucket = VaultBucket.load("vault")
    print(bucket)
    get_run_logger().info("loaded %r with %s", bucket, bucket.creds)
    return bucket.creds.token.get_secret_value()[:3]


def _cli(*args: str, env: dict[str, str]) -> str:
    out = subprocess.run([LEGATO, *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_no_secret_value_is_readable_anywhere(history: str, start_server: Any,
                                              monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    server = start_server("--access-log")
    monkeypatch.setenv("LEGATO_API_URL", server.api_url)
    reset_settings_cache()
    VaultCreds(token=SECRET, info={"private_key": SECRET_IN_DICT}).save("vault-creds")
    VaultBucket(bucket="b", creds=VaultCreds.load("vault-creds")).save("vault")
    assert uses_the_block() == SECRET[:3]  # the flow could read it, explicitly

    env = {**os.environ, "LEGATO_API_URL": server.api_url}
    seen = {
        "cli ls": _cli("block", "ls", "--json", env=env),
        "cli inspect": _cli("block", "inspect", "vault-bucket/vault", env=env),
        "cli inspect creds": _cli("block", "inspect", "vault-creds/vault-creds", "--json", env=env),
        "api listing": json.dumps(get_client().read_block_documents()),
        "run logs": json.dumps([r.message for r in get_client().read_logs()]),
        "cli logs": "",
    }
    runs = get_client().read_flow_runs()
    seen["cli logs"] = _cli("flow-run", "logs", str(runs[0].id), env=env)
    close_clients()
    server.stop()
    seen["server log"] = server.output()
    assert "********" in seen["cli inspect creds"]
    assert "VaultBucket(" in seen["run logs"] or "bucket='b'" in seen["run logs"]

    # the database: the file (and its WAL) on SQLite, every stored text on PostgreSQL
    s = get_settings()
    if history == "sqlite":
        home = Path(s.home)
        seen["database file"] = b"".join(
            p.read_bytes() for p in home.iterdir() if p.name.startswith("legato.db")
        ).decode("latin-1")
    else:
        engine = sa.create_engine(s.resolved_database_url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT data FROM block_document")).scalars().all()
            seen["database file"] = json.dumps(rows)
        engine.dispose()
    for where, text in seen.items():
        assert SECRET not in text, f"the secret is readable in the {where}"
        assert SECRET_IN_DICT not in text, f"the secret is readable in the {where}"
