"""`make demo`: the seed's NYC taxi pipeline, end to end, offline.

1. writes fake yellow-taxi files for 2021-01 and 2021-02 into a temporary folder and serves them
   from 127.0.0.1 (the machine has no internet; the files have the real data set's columns);
2. points the pipeline at that server (LEGATO_EXAMPLE_DATA_URL) and runs the parent flow
   `gather_flow("yellow", 2021, [1, 2])` twice: the second run's downloads come from the cache;
3. shows what the history recorded, and where it is.

Parquet files go to $LEGATO_EXAMPLE_OUTPUT (default ./data); the history to $LEGATO_HOME/legato.db
(default ~/.legato).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "nyc_taxi"))  # the example is a plain script folder, not a package

import fake_data  # noqa: E402
from etl_web_to_local import gather_flow  # noqa: E402

from legato.client import get_client  # noqa: E402
from legato.schemas import FlowRunFilter, TaskRunFilter  # noqa: E402
from legato.settings import get_settings  # noqa: E402

COLOR, YEAR, MONTHS = "yellow", 2021, [1, 2]
ROWS = 5_000  # per month; the real files have ~1.4 million rows


def describe_last_run() -> None:
    """Print the latest parent flow run, its subflow runs and their task runs, from the history."""
    client = get_client()
    parent = client.read_flow_runs(FlowRunFilter(flow_name="Parent GCP flow", limit=1))[0]
    print(f"  flow run {parent.name!r} ({parent.flow_name}) {parent.state_name}  id={parent.id}")
    for placeholder in client.read_task_runs(TaskRunFilter(flow_run_id=parent.id)):
        for child in client.read_flow_runs(FlowRunFilter(parent_task_run_id=placeholder.id)):
            print(
                f"    subflow run {child.name!r} ({child.flow_name}, month="
                f"{child.parameters.get('month')}) {child.state_name}"
            )
            for tr in client.read_task_runs(TaskRunFilter(flow_run_id=child.id)):
                print(f"      task run {tr.name:<22} {tr.state_name}")


def main() -> None:
    output = Path(os.environ.setdefault("LEGATO_EXAMPLE_OUTPUT", "data")).resolve()
    with tempfile.TemporaryDirectory(prefix="legato-demo-") as tmp:
        for month in MONTHS:
            fake_data.write_month(tmp, COLOR, YEAR, month, rows=ROWS)
        base_url, shutdown = fake_data.serve(tmp)
        os.environ["LEGATO_EXAMPLE_DATA_URL"] = fake_data.url_template(base_url)
        print(f"Serving generated taxi data at {base_url} (no internet needed)\n")
        try:
            for attempt in (1, 2):
                print(
                    f"=== Run {attempt}: gather_flow({COLOR!r}, {YEAR}, {MONTHS})"
                    + (" -- ingest_data should be Cached this time" if attempt == 2 else "")
                )
                gather_flow(COLOR, YEAR, MONTHS)
                print(f"\nWhat the history recorded for run {attempt}:")
                describe_last_run()
                print()
        finally:
            shutdown()

    settings = get_settings()
    print(f"Parquet files: {output}/")
    for f in sorted(output.glob(f"{COLOR}_tripdata_{YEAR}-*.parquet")):
        print(f"  {f.name}")
    print(
        f"\nThe run history is in {settings.home / 'legato.db'} "
        "(LEGATO_HOME, default ~/.legato). Look at it with:"
    )
    # the command sits beside this interpreter (.venv/bin/legato after `make demo`)
    cli = Path(sys.executable).parent / "legato"
    cmd = os.path.relpath(cli) if cli.exists() else "legato"
    print(f"  {cmd} flow-run ls")
    print(f"  {cmd} flow-run logs <flow-run-id>")
    print(f"  {cmd} task-run ls --flow-run <flow-run-id>")


if __name__ == "__main__":
    main()
