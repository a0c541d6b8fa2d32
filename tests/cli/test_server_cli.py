"""`legato server start` / `orion start` / `hash-key`, and `legato concurrency-limit`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import httpx
from tests.server.conftest import LEGATO, ServerProcess, free_port, server_env


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LEGATO, *args], env=server_env(**env), capture_output=True, text=True,
                          timeout=60)


def test_open_server_refuses_to_listen_beyond_this_machine() -> None:
    out = run("server", "start", "--host", "0.0.0.0", "--port", str(free_port()))
    assert out.returncode == 1
    assert "Refusing to listen on 0.0.0.0 with no API keys" in out.stderr
    assert "--allow-unauthenticated" in out.stderr


def test_orion_start_is_the_same_server_and_warns_when_open(tmp_path: Path) -> None:
    srv = ServerProcess(server_env(), port=free_port())  # (for its URLs)
    proc = subprocess.Popen([LEGATO, "orion", "start", "--port", str(srv.port)],
                            env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{srv.api_url}/health", timeout=1).json() is True:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert "No API keys are set" in err
    assert f"LEGATO_API_URL=http://127.0.0.1:{srv.port}/api" in out


def test_hash_key_prints_the_digest_a_keys_file_takes() -> None:
    out = run("server", "hash-key", "s3cret")
    assert out.stdout.strip() == hashlib.sha256(b"s3cret").hexdigest()


def test_concurrency_limit_commands_embedded(tmp_path: Path) -> None:
    env = {"LEGATO_HOME": str(tmp_path / "home")}
    assert run("concurrency-limit", "create", "gpu", "3", **env).returncode == 0
    shown = json.loads(run("concurrency-limit", "inspect", "gpu", "--json", **env).stdout)
    assert shown["concurrency_limit"] == 3 and shown["active_slots"] == []
    assert run("concurrency-limit", "create", "gpu", "1", **env).returncode == 0
    listed = json.loads(run("concurrency-limit", "ls", "--json", **env).stdout)
    assert [(r["tag"], r["concurrency_limit"]) for r in listed] == [("gpu", 1)]
    assert run("concurrency-limit", "delete", "gpu", **env).returncode == 0
    missing = run("concurrency-limit", "inspect", "gpu", **env)
    assert missing.returncode == 1 and "No concurrency limit for tag 'gpu'" in missing.stderr
    bad = run("concurrency-limit", "create", "gpu", "-1", **env)
    assert bad.returncode == 2


def test_cli_against_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    out = run("flow-run", "ls", LEGATO_API_URL=f"http://127.0.0.1:{free_port()}/api",
              LEGATO_API_REQUEST_RETRIES="0", LEGATO_HOME=str(tmp_path / "h"))
    assert out.returncode == 1
    assert out.stderr.startswith("Error: Could not reach the Legato server")
    assert "Traceback" not in out.stderr


def test_flow_run_delete_embedded_and_through_a_server(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    script = tmp_path / "two.py"
    script.write_text("from legato import flow\n@flow\ndef keep():\n    return 1\n"
                      "@flow\ndef drop():\n    return 2\nkeep(); drop()\n")
    import sys

    subprocess.run([sys.executable, str(script)], env=server_env(LEGATO_HOME=home), check=True,
                   capture_output=True)
    runs = json.loads(run("flow-run", "ls", "--json", LEGATO_HOME=home).stdout)
    drop = next(r for r in runs if r["flow_name"] == "drop")
    missing = run("flow-run", "delete", drop["id"], "00000000-0000-0000-0000-000000000000",
                  "--yes", LEGATO_HOME=home)
    assert missing.returncode == 1 and "00000000-0000-0000-0000-000000000000" in missing.stderr
    assert len(json.loads(run("flow-run", "ls", "--json", LEGATO_HOME=home).stdout)) == 2
    srv = ServerProcess(server_env(LEGATO_HOME=home)).start(tmp_path / "srv.log")
    try:
        out = run("flow-run", "delete", drop["id"], "--yes", LEGATO_HOME=home,
                  LEGATO_API_URL=srv.api_url)
        assert out.returncode == 0, out.stderr
        left = json.loads(run("flow-run", "ls", "--json", LEGATO_HOME=home,
                              LEGATO_API_URL=srv.api_url).stdout)
        assert [r["flow_name"] for r in left] == ["keep"]
    finally:
        srv.stop()


def test_several_worker_processes_share_one_postgres_database(
        postgres_url: str, tmp_path: Path) -> None:
    from tests.conftest import _truncate

    _truncate(postgres_url)
    env = server_env(LEGATO_DATABASE_URL=postgres_url, LEGATO_HOME=str(tmp_path / "srv"))
    srv = ServerProcess(env, args=("--workers", "2")).start(tmp_path / "srv.log", timeout=40)
    try:
        with httpx.Client(base_url=srv.api_url) as api:
            ids = [api.post("/flow_runs/", json={"flow_name": "w"}).json()["id"] for _ in range(20)]
            for run_id in ids:
                r = api.post(f"/flow_runs/{run_id}/set_state", json={"state": {"type": "RUNNING"}})
                assert r.json()["status"] == "ACCEPT"
            assert api.post("/flow_runs/count", json={"flow_name": "w"}).json()["count"] == 20
    finally:
        srv.stop()
