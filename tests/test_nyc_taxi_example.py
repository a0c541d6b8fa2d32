"""The flagship example end to end, as `make demo` runs it: a real server, the blocks and the
deployment saved, a real agent running the parent flow for three months; then the files, the
bucket and the warehouse are checked against the generated data, and nothing is left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "nyc_taxi"))

import fake_data  # noqa: E402
from tests.integration.deploy_helpers import free_port  # noqa: E402


def see_the_run_in_the_ui(run_url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(run_url)
        assert "Completed" in page.locator("#run-state").inner_text()
        assert "Parent GCP flow" in page.locator(".crumbs").inner_text()
        assert "Subflow runs (3)" in page.content()
        assert "Deployment" in page.locator(".facts").inner_text()
        page.goto(run_url.split("/runs/")[0] + "/deployments")
        assert "nyc-taxi-monthly" in page.content()
        browser.close()


def test_make_demo_runs_three_months_through_an_agent(tmp_path: Path, legato_home: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env.update(LEGATO_HOME=str(legato_home), LEGATO_LOGGING_TO_CONSOLE="false")
    port = free_port()
    demo = [sys.executable, str(ROOT / "examples" / "demo.py"), "--port", str(port)]
    try:
        done = subprocess.run([*demo, "--data-dir", str(data)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        assert "The run ended Completed" in out
        assert "make stop" in out
        # what a newcomer does next: open the address it printed, and see the run Completed
        run_url = re.search(r"this run: (http://\S+)\)", out).group(1)
        see_the_run_in_the_ui(run_url)
    finally:
        stopped = subprocess.run([*demo, "--stop-server"], env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=60)
    assert "Stopped the demo's Legato server" in stopped.stdout, stopped.stdout + stopped.stderr

    # what it says it did
    for month in (1, 2, 3):
        assert f"2021-{month:02}: 5,000" in out, out
    assert f"Open the UI: http://127.0.0.1:{port}/" in out
    # nothing it started is still running: the server, the agent, the flow's processes
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", out + stopped.stdout)]
    assert len(pids) >= 2, out
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", pid
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            assert str(legato_home) not in " ".join(proc.info["cmdline"] or []), proc
            assert (proc.info["environ"] or {}).get("LEGATO_HOME") != str(legato_home), proc
        except psutil.Error:
            continue

    # the bucket holds each month's parquet file: the generated rows, cleaned
    for month in (1, 2, 3):
        expected = fake_data.make_trips("yellow", 2021, month, rows=5_000)
        path = data / "bucket" / "yellow" / f"yellow_tripdata_2021-{month:02}.parquet"
        got = pd.read_parquet(path)
        assert len(got) == len(expected)
        assert list(got.columns) == list(expected.columns)
        assert pd.api.types.is_datetime64_any_dtype(got["tpep_pickup_datetime"])
        assert got["tpep_pickup_datetime"].dt.month.eq(month).all()
        assert got["total_amount"].sum() == expected["total_amount"].sum()
        # the local copy is the same file the bucket holds
        local = data / "local" / "yellow" / path.name
        assert local.read_bytes() == path.read_bytes()

    # the warehouse table: each month's rows, once
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        counts = dict(con.execute(
            'select month(tpep_pickup_datetime), count(*) from zoom."taxiData" group by 1'
        ).fetchall())
        total = con.execute('select sum(total_amount) from zoom."taxiData"').fetchone()[0]
    assert counts == {1: 5_000, 2: 5_000, 3: 5_000}
    expected_total = sum(fake_data.make_trips("yellow", 2021, m, rows=5_000)["total_amount"].sum()
                         for m in (1, 2, 3))
    assert abs(total - expected_total) < 1e-6 * expected_total

    # the history: the deployment's run, its three subflow runs, all Completed
    from legato.client import get_client
    from legato.schemas import FlowRunFilter

    client = get_client()
    runs = client.read_flow_runs(FlowRunFilter(flow_name="Parent GCP flow"))
    [parent] = [r for r in runs if not r.auto_scheduled]  # the others: the monthly schedule's
    assert {r.state_name for r in runs if r.auto_scheduled} <= {"Scheduled"}
    assert parent.state_name == "Completed" and parent.deployment_id is not None
    assert parent.parameters["months"] == [1, 2, 3]
    children = client.read_flow_runs(FlowRunFilter(parent_flow_run_id=parent.id))
    assert sorted(c.parameters["month"] for c in children) == [1, 2, 3]
    assert {c.state_name for c in children} == {"Completed"}
    dep = client.read_deployment(str(parent.deployment_id))
    assert dep["work_queue_name"] == "default"
    assert [s["schedule"]["cron"] for s in dep["schedules"]] == ["0 6 2 * *"]
