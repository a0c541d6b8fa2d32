"""The server runs its background services: retention prunes old runs without being asked."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx
import sqlalchemy as sa

from legato import flow, task


@task
def work() -> int:
    return 1


@flow
def old_job() -> int:
    return work()


@flow
def new_job() -> int:
    return work()


def test_the_retention_service_prunes_while_the_server_runs(history: str, start_server: Any) -> None:
    from legato.client.factory import close_clients
    from legato.settings import get_settings
    from legato.store import models
    from legato.store.database import get_database

    old_job()
    new_job()
    close_clients()
    db = get_database(get_settings().resolved_database_url)
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=40)
    fr = models.flow_run
    with db.write() as conn:
        old_ids = sa.select(fr.c.id).join(models.flow).where(models.flow.c.name == "old-job")
        conn.execute(sa.update(fr).where(fr.c.id.in_(old_ids)).values(end_time=long_ago,
                                                                       created=long_ago))
    srv = start_server(LEGATO_RETENTION_FLOW_RUNS_DAYS="30")
    deadline = time.monotonic() + 30
    while True:
        names = [r["flow_name"] for r in httpx.post(f"{srv.api_url}/flow_runs/filter", json={}).json()]
        if names == ["new-job"]:
            break
        assert time.monotonic() < deadline, f"still there: {names}"
        time.sleep(0.1)
    assert httpx.post(f"{srv.api_url}/task_runs/count", json={}).json()["count"] == 1
