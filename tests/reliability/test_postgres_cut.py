"""PostgreSQL ends every connection of the history's database, again and again, while flows run
(a database restart, a failover, a network cut): through a real server and embedded, every run
still ends Completed with every task run and log line recorded, and nothing twice."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.integration.deploy_helpers import Stack

from legato.schemas import TaskRunFilter
from legato.states import StateType

pytestmark = [pytest.mark.skipif(os.name != "posix", reason="process groups"),
              pytest.mark.postgres]

TASKS = 150

SCRIPT = textwrap.dedent(f'''
    import time
    from legato import flow, task, get_run_logger

    @task
    def step(i):
        get_run_logger().info("step %d", i)
        time.sleep(0.02)
        return i

    @flow(name="through-cuts")
    def through_cuts():
        return sum(step(i) for i in range({TASKS}))

    print("result", through_cuts())
''')



class Cutter:
    """Ends every other session of the database every ``every`` seconds, in a thread."""

    def __init__(self, url: str, every: float = 0.3) -> None:
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.every = every
        self.cut = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            with self.engine.connect() as conn:
                self.cut += len(conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all())

    def __enter__(self) -> Cutter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()


@pytest.mark.parametrize("door", ["server", "embedded"])
def test_runs_survive_their_database_connections_being_cut(pg_stack: Stack, tmp_path: Path,
                                                           postgres_url: str, door: str) -> None:
    stack = pg_stack
    if door == "server":
        stack.start_server()
        env = stack.env
    else:
        env = stack.base_env()
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    with Cutter(postgres_url) as cutter:
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                              text=True, timeout=300)
    assert cutter.cut > 0  # connections were indeed cut while it ran
    assert done.returncode == 0, done.stderr
    assert f"result {sum(range(TASKS))}" in done.stdout

    client = stack.client if door == "server" else _embedded_client()
    (run,) = client.read_flow_runs()
    assert run.state_type is StateType.COMPLETED, run.state_message
    tasks = client.read_task_runs(TaskRunFilter(flow_run_id=run.id, limit=1000))
    assert len(tasks) == TASKS
    assert all(t.state_type is StateType.COMPLETED for t in tasks)
    steps = [m.message for m in client.read_logs(flow_run_id=run.id)
             if m.message.startswith("step ")]
    assert sorted(steps) == sorted(f"step {i}" for i in range(TASKS))  # each line once


def _embedded_client():
    from legato.client.factory import get_client

    return get_client()
