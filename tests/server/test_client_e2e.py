"""Scripts pointed at a real `legato server start` with LEGATO_API_URL: everything they record
reaches the server, the CLI reads it back, failures are retried or reported once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import LEGATO, free_port, server_env

SCRIPT = textwrap.dedent('''
    import json, sys, time
    from legato import flow, task, get_run_logger

    @task
    def inc(x):
        return x + 1

    @task(retries=2)
    def flaky(marker):
        import pathlib
        p = pathlib.Path(marker)
        n = int(p.read_text()) if p.exists() else 0
        p.write_text(str(n + 1))
        if n < 2:
            raise RuntimeError(f"attempt {n + 1} fails")
        return n

    @flow
    def child(x):
        return inc(x)

    @flow(log_prints=True)
    def pipeline(n: int, marker: str):
        total = 0
        for _ in range(n):
            total = inc(total)
        print("total is", total)
        flaky(marker)
        return child(total)

    if __name__ == "__main__":
        state = pipeline(int(sys.argv[1]), sys.argv[2], return_state=True)
        print(json.dumps({"returned_at": time.time(), "state": state.type.value}))
''')


def run_script(tmp_path: Path, env: dict[str, str], n: int = 50) -> dict[str, Any]:
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(n), str(tmp_path / "marker")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli(env: dict[str, str], *args: str) -> Any:
    out = subprocess.run([LEGATO, *args, "--json"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_script_records_everything_on_the_server(server: Any, tmp_path: Path) -> None:
    env = server_env(LEGATO_API_URL=server.api_url, LEGATO_HOME=str(tmp_path / "client-home"))
    result = run_script(tmp_path, env, n=200)
    assert result["state"] == "COMPLETED"
    api = httpx.Client(base_url=server.api_url)
    runs = api.post("/flow_runs/filter", json={"sort": "created_asc"}).json()
    assert [(r["flow_name"], r["state_type"]) for r in runs] == [
        ("pipeline", "COMPLETED"), ("child", "COMPLETED")]
    parent = runs[0]
    tasks = api.post("/task_runs/filter", json={"flow_run_id": parent["id"]}).json()
    assert len(tasks) == 200 + 1 + 1  # inc x200, flaky, the subflow's stand-in
    assert all(t["state_type"] == "COMPLETED" for t in tasks)
    flaky = next(t for t in tasks if t["name"].startswith("flaky"))
    assert flaky["run_count"] == 3
    kinds = [s["name"] for s in api.get(f"/task_runs/{flaky['id']}/states").json()]
    assert kinds.count("Retrying") == 2 and kinds[-1] == "Completed"
    logs = api.post("/logs/filter", json={"flow_run_id": parent["id"]}).json()
    assert any(entry["message"] == "total is 200" for entry in logs)
    assert sum("attempt" in entry["message"] for entry in logs) == 2
    # nothing was written to a local history: the client's home has no database
    assert not (tmp_path / "client-home" / "legato.db").exists()
    # the CLI reads the same through the server
    listed = cli(env, "flow-run", "ls")
    assert {r["id"] for r in listed} == {r["id"] for r in runs}
    shown = cli(env, "flow-run", "inspect", parent["id"][:-6])  # a unique prefix
    assert shown["state_type"] == "COMPLETED"
    assert len(cli(env, "task-run", "ls", "--flow-run", parent["id"], "--limit", "1000")) == 202


def test_history_is_on_the_server_within_a_second_of_the_flow_returning(
        server: Any, tmp_path: Path) -> None:
    env = server_env(LEGATO_API_URL=server.api_url, LEGATO_HOME=str(tmp_path / "h"))
    result = run_script(tmp_path, env, n=1000)
    api = httpx.Client(base_url=server.api_url)
    # read no later than 1 s after the flow returned (the script has exited by now, having
    # flushed; the reads themselves are the only wait)
    assert time.time() - result["returned_at"] < 5
    counts = api.post("/task_runs/count", json={}).json()["count"]
    assert counts == 1000 + 1 + 1 + 1  # the parent's tasks and the child's one task


def test_runs_recorded_before_the_server_started_are_served(
        history: str, start_server: Any, tmp_path: Path) -> None:
    from legato import flow

    @flow
    def before_the_server() -> int:
        return 1

    before_the_server()
    from legato.client.factory import close_clients

    close_clients()
    srv = start_server()
    runs = httpx.post(f"{srv.api_url}/flow_runs/filter", json={}).json()
    assert [r["flow_name"] for r in runs] == ["before-the-server"]


def test_the_client_waits_out_a_server_restart(history: str, start_server: Any,
                                               tmp_path: Path) -> None:
    port = free_port()
    srv = start_server(port=port)
    go, ready = tmp_path / "go", tmp_path / "ready"
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(f'''
        import pathlib, time
        from legato import flow, task

        @task
        def step(i):
            if i == 5:
                pathlib.Path({str(ready)!r}).write_text("1")
                while not pathlib.Path({str(go)!r}).exists():
                    time.sleep(0.02)
            return i

        @flow
        def survives_restart():
            return sum(step(i) for i in range(10))

        print(survives_restart())
    '''))
    env = server_env(LEGATO_API_URL=srv.api_url, LEGATO_HOME=str(tmp_path / "h"),
                     LEGATO_API_REQUEST_RETRIES="10")
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        srv.stop()  # the server goes away mid-flow ...
        go.write_text("1")
        time.sleep(0.3)  # ... long enough for the client to find it gone
        srv2 = start_server(port=port)  # ... and comes back on the same address
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == "45"
    api = httpx.Client(base_url=srv2.api_url)
    run = api.post("/flow_runs/filter", json={}).json()[0]
    assert run["state_type"] == "COMPLETED"
    tasks = api.post("/task_runs/filter", json={"flow_run_id": run["id"]}).json()
    assert len(tasks) == 10 and all(t["state_type"] == "COMPLETED" for t in tasks)


def test_an_unreachable_server_is_one_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "nowhere.py"
    script.write_text("from legato import flow\n@flow\ndef f():\n    return 1\nf()\n")
    port = free_port()
    env = server_env(LEGATO_API_URL=f"http://127.0.0.1:{port}/api",
                     LEGATO_HOME=str(tmp_path / "h"), LEGATO_API_REQUEST_RETRIES="2")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert f"Could not reach the Legato server at http://127.0.0.1:{port}/api after 3 attempts" \
        in out.stderr
    assert out.stderr.count("Traceback") == 1


def test_concurrency_limit_holds_across_processes(server: Any, tmp_path: Path) -> None:
    env = server_env(LEGATO_API_URL=server.api_url, LEGATO_HOME=str(tmp_path / "h"),
                     LEGATO_CONCURRENCY_SLOT_WAIT_SECONDS="0.05")
    out = subprocess.run([LEGATO, "concurrency-limit", "create", "warehouse", "1"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    log = tmp_path / "intervals.jsonl"
    script = tmp_path / "limited.py"
    script.write_text(textwrap.dedent(f'''
        import json, time, sys
        from legato import flow, task

        @task(tags=["warehouse"])
        def load(i):
            start = time.time()
            time.sleep(0.15)
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps([start, time.time()]) + "\\n")

        @flow
        def loader():
            for f in [load.submit(i) for i in range(3)]:
                f.result()

        loader()
    '''))
    procs = [subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    intervals = sorted(json.loads(line) for line in log.read_text().splitlines())
    assert len(intervals) == 6
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        assert start >= end, "two task runs with the tag ran at once"
    limit = cli(env, "concurrency-limit", "inspect", "warehouse")
    assert limit["active_slots"] == []


@pytest.mark.postgres
def test_two_servers_on_one_postgres_serve_the_same_data_and_losing_one_loses_nothing(
        postgres_url: str, start_server: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from tests.conftest import _truncate

    _truncate(postgres_url)
    monkeypatch.setenv("LEGATO_DATABASE_URL", postgres_url)
    one, two = start_server(), start_server()
    env_one = server_env(LEGATO_API_URL=one.api_url, LEGATO_HOME=str(tmp_path / "h1"))
    env_two = server_env(LEGATO_API_URL=two.api_url, LEGATO_HOME=str(tmp_path / "h2"))
    procs = []
    for d, env in (("a", env_one), ("b", env_two)):  # two clients, one on each replica
        (tmp_path / d).mkdir()
        (tmp_path / d / "pipeline.py").write_text(SCRIPT)
        procs.append(subprocess.Popen(
            [sys.executable, str(tmp_path / d / "pipeline.py"), "100", str(tmp_path / d / "marker")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    import signal

    one.stop(signal.SIGKILL)  # one replica dies hard
    api = httpx.Client(base_url=two.api_url)
    runs = api.post("/flow_runs/filter", json={}).json()
    assert len(runs) == 4 and all(r["state_type"] == "COMPLETED" for r in runs)
    assert api.post("/task_runs/count", json={}).json()["count"] == 2 * (100 + 1 + 1 + 1)
    # and the survivor keeps taking work
    result = run_script(tmp_path / "b", env_two, n=10)
    assert result["state"] == "COMPLETED"
    assert len(api.post("/flow_runs/filter", json={}).json()) == 6


def test_get_client_reads_the_same_runs_through_both_doors(
        history: str, start_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from legato import flow
    from legato.client.orchestration import get_client
    from legato.schemas import FlowRunFilter
    from legato.settings import reset_settings_cache

    @flow
    def recorded() -> int:
        return 1

    recorded()

    async def names() -> list[str]:
        async with get_client() as client:
            return [r.flow_name for r in await client.read_flow_runs(FlowRunFilter())]

    embedded = asyncio.run(names())
    with get_client(sync_client=True) as client:
        assert [r.flow_name for r in client.read_flow_runs()] == embedded == ["recorded"]
    from legato.client.factory import close_clients

    close_clients()
    srv = start_server()
    monkeypatch.setenv("LEGATO_API_URL", srv.api_url)
    reset_settings_cache()
    assert asyncio.run(names()) == ["recorded"]
    with get_client(sync_client=True) as client:
        assert client.health() is True
        assert [r.flow_name for r in client.read_flow_runs()] == ["recorded"]
