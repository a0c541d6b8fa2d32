"""`make demo`: the seed's NYC taxi pipeline as a deployment run by an agent, offline.

1. generates yellow-taxi files for 2021-01..03 (the real data set's columns) and serves them
   from 127.0.0.1 at the real URL layout (the machine needs no internet);
2. starts `legato server start` in the background (or uses the one already answering);
3. saves the blocks (a local folder as the bucket, a DuckDB file as the warehouse) and the
   deployment `Parent GCP flow/nyc-taxi-monthly` (monthly cron, queue `default`);
4. starts `legato agent start -q default`, runs the deployment for three months, and shows what
   it did: rows loaded per month, the parquet files in the bucket, the run in the UI;
5. stops the agent; the server keeps running for the UI (`make stop` stops it; `--stop` here
   stops it at the end too).

Files go to ./data (`--data-dir`); the history to LEGATO_HOME (default ~/.legato).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "nyc_taxi"))  # the example is a plain script folder, not a package

import fake_data  # noqa: E402

COLOR, YEAR, MONTHS, ROWS = "yellow", 2021, [1, 2, 3], 5_000  # the real files: ~1.4M rows
BIN = Path(sys.executable).parent
LEGATO = str(BIN / "legato") if (BIN / "legato").exists() else "legato"


def home() -> Path:
    return Path(os.environ.get("LEGATO_HOME") or Path.home() / ".legato").expanduser()


def pid_file() -> Path:
    return home() / "demo-server.pid"


def healthy(api_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_server(port: int) -> str:
    api_url = f"http://127.0.0.1:{port}/api"
    if healthy(api_url):
        print(f"Using the Legato server already answering at {api_url}")
        return api_url
    home().mkdir(parents=True, exist_ok=True)
    log = open(home() / "demo-server.log", "ab")  # noqa: SIM115 - the server holds it
    proc = subprocess.Popen([LEGATO, "server", "start", "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    pid_file().write_text(str(proc.pid))
    deadline = time.monotonic() + 60
    while not healthy(api_url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"The server did not start: see {home() / 'demo-server.log'}")
        time.sleep(0.2)
    print(f"Started a Legato server at {api_url} (pid {proc.pid}, log "
          f"{home() / 'demo-server.log'})")
    return api_url


def stop_server() -> None:
    """Stop the server this demo started (its whole process group)."""
    path = pid_file()
    if not path.exists():
        print("No demo server to stop.")
        return
    pid = int(path.read_text())
    _stop_group(pid, "the demo's Legato server")
    path.unlink(missing_ok=True)


def _stop_group(pid: int, what: str, grace: float = 15) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:  # reap it if it is our child (a zombie still counts as a member of its group)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            print(f"Stopped {what} (pid {pid}).")
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    print(f"Killed {what} (pid {pid}): it did not stop within {grace:g} s.")


def wait_for_run(client: object, run_id: str, timeout: float = 120) -> object:
    from legato.states import TERMINAL_TYPES

    seen = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)  # type: ignore[attr-defined]
        if run.state_name != seen:
            seen = run.state_name
            print(f"  {time.strftime('%H:%M:%S')}  flow run {run.name!r}: {seen}")
        if run.state_type in TERMINAL_TYPES:
            return run
        time.sleep(0.3)
    raise SystemExit(f"The run did not finish within {timeout:g} s; see "
                     f"{home() / 'demo-agent.log'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("LEGATO_DEMO_PORT", 4200)))
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--stop", action="store_true", help="stop the server at the end too")
    ap.add_argument("--stop-server", action="store_true", help="only stop the demo's server")
    args = ap.parse_args()
    if args.stop_server:
        stop_server()
        return
    started = time.monotonic()
    data_dir = args.data_dir.resolve()
    api_url = start_server(args.port)
    os.environ["LEGATO_API_URL"] = api_url  # this process talks to the server too

    # here, not at the top: `--stop-server` needs none of it (pandas, the blocks, the client)
    import setup_blocks

    from legato.blocks.core import Block
    from legato.client import get_client

    dep_id = setup_blocks.setup(data_dir, months=MONTHS, year=YEAR, color=COLOR)
    warehouse = Block.load(f"sql-warehouse/{setup_blocks.WAREHOUSE_NAME}")
    warehouse.execute('drop table if exists zoom."taxiData"')  # each demo starts afresh
    print(f"Saved blocks {setup_blocks.BUCKET_NAME!r} (a folder: {data_dir / 'bucket'}) and "
          f"{setup_blocks.WAREHOUSE_NAME!r} (DuckDB: {data_dir / 'warehouse.duckdb'}), and the "
          f"deployment 'Parent GCP flow/{setup_blocks.DEPLOYMENT}' (monthly, queue 'default')")

    agent = None
    with tempfile.TemporaryDirectory(prefix="legato-demo-") as tmp:
        for month in MONTHS:
            fake_data.write_month(tmp, COLOR, YEAR, month, rows=ROWS)
        base_url, shutdown = fake_data.serve(tmp)
        print(f"Serving generated taxi data at {base_url} (the real URL layout; no internet)")
        env = {**os.environ, "LEGATO_EXAMPLE_DATA_URL": fake_data.url_template(base_url),
               "LEGATO_EXAMPLE_OUTPUT": str(data_dir / "local")}
        log = open(home() / "demo-agent.log", "ab")  # noqa: SIM115 - the agent holds it
        try:
            agent = subprocess.Popen([LEGATO, "agent", "start", "-q", "default", "--name",
                                      "demo-agent"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            print(f"Started an agent on queue 'default' (pid {agent.pid})\n")
            client = get_client()
            run = client.create_flow_run_from_deployment(dep_id)
            print(f"Running 'Parent GCP flow/{setup_blocks.DEPLOYMENT}' for {COLOR} {YEAR}, "
                  f"months {MONTHS}:")
            final = wait_for_run(client, str(run["id"]))
        finally:
            if agent is not None:
                _stop_group(agent.pid, "the agent")
            shutdown()
    show_results(final, warehouse, data_dir, api_url, started)
    if args.stop:
        stop_server()
    else:
        print("\nThe server keeps running for the UI; stop it with `make stop`.")
    if final.state_name != "Completed":  # type: ignore[attr-defined]
        raise SystemExit(1)


def show_results(run: object, warehouse: object, data_dir: Path, api_url: str,
                 started: float) -> None:
    ui = api_url.removesuffix("/api")
    print(f"\nThe run ended {run.state_name} in {time.monotonic() - started:.1f} s "  # type: ignore[attr-defined]
          "(server, blocks, deployment and agent included).")
    rows = warehouse.fetch_all(  # type: ignore[attr-defined]
        'select month(tpep_pickup_datetime) as m, count(*) from zoom."taxiData" group by m '
        "order by m")
    print("\nRows in the warehouse table zoom.taxiData, by month:")
    for month, count in rows:
        print(f"  {YEAR}-{int(month):02}: {count:,}")
    print(f"\nParquet files in the bucket ({data_dir / 'bucket'}):")
    for f in sorted((data_dir / "bucket").rglob("*.parquet")):
        print(f"  {f.relative_to(data_dir / 'bucket')}  ({f.stat().st_size:,} bytes)")
    print(f"\nOpen the UI: {ui}/   (this run: {ui}/runs/{run.id})")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
