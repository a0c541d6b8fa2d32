"""The seed's NYC taxi pipeline (examples/nyc_taxi) works on Legato, offline.

Generated taxi files are served from 127.0.0.1; the parent flow runs twice in this process.
Checked: the parquet files, and what the history says about every run (parent flow, subflows,
task runs, the cache hit, the printed output), on SQLite and on PostgreSQL. Also the seed's
retries: a task that fails twice and then succeeds, under retries=3.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from legato import flow, task
from legato.client import get_client
from legato.schemas import FlowRun, FlowRunFilter, TaskRun, TaskRunFilter
from legato.states import StateType

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "examples" / "nyc_taxi"
ROWS = {1: 300, 2: 450}  # a different size per month, so each file's row count is checked


def _load(name: str) -> ModuleType:
    """Import an example script by path (examples/ is a folder of scripts, not a package)."""
    module_name = f"legato_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLE_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def etl() -> ModuleType:
    return _load("etl_web_to_local")


@pytest.fixture
def taxi_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legato_home: Path
) -> Iterator[tuple[Path, object]]:
    """Fake yellow 2021-01/02 files served from loopback; the example pointed at them.

    Yields (output folder, shutdown function of the server)."""
    fake = _load("fake_data")
    source = tmp_path / "source"
    for month, rows in ROWS.items():
        fake.write_month(source, "yellow", 2021, month, rows=rows)
    base_url, shutdown = fake.serve(source)
    output = tmp_path / "out"
    # set after conftest's legato_home fixture, which clears every LEGATO_* variable
    monkeypatch.setenv("LEGATO_EXAMPLE_DATA_URL", fake.url_template(base_url))
    monkeypatch.setenv("LEGATO_EXAMPLE_OUTPUT", str(output))
    yield output, shutdown
    shutdown()


def _task_runs_by_name(flow_run_id: str) -> dict[str, TaskRun]:
    """The task runs of a flow run, keyed by task name ("clean_it-0" -> "clean_it")."""
    runs = get_client().read_task_runs(TaskRunFilter(flow_run_id=flow_run_id))
    by_name = {tr.name.rsplit("-", 1)[0]: tr for tr in runs}
    assert len(by_name) == len(runs), [tr.name for tr in runs]
    return by_name


def _subflow_runs(parent: FlowRun) -> list[FlowRun]:
    """The child flow runs of a parent flow run, in the order they ran."""
    client = get_client()
    placeholders = client.read_task_runs(TaskRunFilter(flow_run_id=parent.id))
    children = []
    for placeholder in placeholders:
        # a subflow run is represented in its parent by a task run, which must settle too
        assert placeholder.state_type == StateType.COMPLETED, placeholder
        (child,) = client.read_flow_runs(FlowRunFilter(parent_task_run_id=placeholder.id))
        children.append(child)
    return children


def test_parent_flow_twice_writes_parquet_and_a_complete_history(
    history: str, etl: ModuleType, taxi_site: tuple[Path, object]
) -> None:
    output, stop_server = taxi_site

    etl.gather_flow("yellow", 2021, [1, 2])
    # Second run: every download must come from the cache. Stopping the server proves it: a
    # cache miss would fail ingest_data (after its retries) and the flow with it.
    stop_server()  # type: ignore[operator]
    etl.gather_flow("yellow", 2021, [1, 2])

    # -- the files --------------------------------------------------------------------------
    for month, rows in ROWS.items():
        path = output / f"yellow_tripdata_2021-{month:02}.parquet"
        assert path.is_file(), sorted(p.name for p in output.iterdir())
        df = pd.read_parquet(path)
        assert len(df) == rows
        assert "VendorID" in df.columns and "congestion_surcharge" in df.columns
        assert pd.api.types.is_datetime64_any_dtype(df["tpep_pickup_datetime"])
        assert pd.api.types.is_datetime64_any_dtype(df["tpep_dropoff_datetime"])
        assert df["tpep_pickup_datetime"].dt.month.eq(month).all()

    # -- the history ------------------------------------------------------------------------
    client = get_client()
    parents = client.read_flow_runs(FlowRunFilter(flow_name="Parent GCP flow", sort="created_asc"))
    assert len(parents) == 2
    for run_index, parent in enumerate(parents):
        assert parent.state_type == StateType.COMPLETED and parent.state_name == "Completed"
        assert parent.parameters == {"color": "yellow", "year": 2021, "months": [1, 2]}

        children = _subflow_runs(parent)
        assert [c.parameters["month"] for c in children] == [1, 2]
        for child in children:
            assert child.flow_name == "GCP flow"
            assert child.state_type == StateType.COMPLETED
            month = child.parameters["month"]

            tasks = _task_runs_by_name(child.id)
            assert set(tasks) == {"ingest_data", "clean_it", "save_data_local"}
            assert all(tr.state_type == StateType.COMPLETED for tr in tasks.values()), tasks
            expected_ingest = "Completed" if run_index == 0 else "Cached"
            assert tasks["ingest_data"].state_name == expected_ingest
            assert tasks["clean_it"].state_name == "Completed"
            assert tasks["save_data_local"].state_name == "Completed"

            # clean_it has log_prints=True: its print() output is in the run's logs
            logs = client.read_logs(flow_run_id=child.id)
            printed = "\n".join(
                rec.message for rec in logs if rec.task_run_id == tasks["clean_it"].id
            )
            assert f"rows: {ROWS[month]}" in printed
            assert "columns:" in printed and "datetime64" in printed
            assert "tpep_pickup_datetime" in printed  # df.head(2)


def test_task_failing_twice_then_succeeding_under_retries_3(history: str) -> None:
    calls: list[int] = []

    @task(retries=3)
    def flaky_download() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"network blip #{len(calls)}")
        return "data"

    @flow(name="retrying flow")
    def retrying_flow() -> str:
        return flaky_download()

    assert retrying_flow() == "data"
    assert len(calls) == 3

    client = get_client()
    (fr,) = client.read_flow_runs(FlowRunFilter(flow_name="retrying flow"))
    assert fr.state_name == "Completed"
    (tr,) = client.read_task_runs(TaskRunFilter(flow_run_id=fr.id))
    assert tr.state_name == "Completed"
    assert tr.run_count == 3

    states = client.read_task_run_states(tr.id)
    attempts = [s.name for s in states if s.type == StateType.RUNNING]
    assert attempts == ["Running", "Retrying", "Retrying"]
    assert [s.name for s in states].count("AwaitingRetry") == 2
    assert states[-1].name == "Completed"
    # each failed attempt's error is kept on the state that scheduled the retry
    retry_messages = [s.message or "" for s in states if s.name == "AwaitingRetry"]
    assert "network blip #1" in retry_messages[0] and "network blip #2" in retry_messages[1]
