"""The server's background services: one leader per service across replicas (PostgreSQL advisory
locks, SQLite file locks), take-over when the leader goes, a loop that survives its service's
errors, and the retention service pruning on the settings."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from legato import flow, task
from legato.runtime import flow_run as current_flow_run
from legato.server.services import RetentionService, default_services
from legato.server.services.base import Service, ServiceRunner, lock_key
from legato.store import models
from legato.store.database import Database

TICK = 0.05


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting until {what}")


class Probe(Service):
    """Counts its runs and how many replicas ran it at the same moment."""

    name = "probe"
    interval = TICK

    def __init__(self, shared: dict[str, Any] | None = None, fail_on: set[int] | None = None):
        self.shared = shared if shared is not None else {"active": 0, "max_active": 0}
        self.lock = threading.Lock()
        self.calls = 0
        self.fail_on = fail_on or set()

    def run_once(self, db: Any) -> None:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError(f"probe failure number {self.calls}")
        with _shared_lock:
            self.shared["active"] += 1
            self.shared["max_active"] = max(self.shared["max_active"], self.shared["active"])
        time.sleep(TICK / 5)
        with _shared_lock:
            self.shared["active"] -= 1


_shared_lock = threading.Lock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, legato_home: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{legato_home / 'legato.db'}"


@pytest.fixture
def runners() -> Iterator[list[ServiceRunner]]:
    made: list[ServiceRunner] = []
    yield made
    for r in made:
        r.stop()
        r.db.dispose()


def runner(made: list[ServiceRunner], url: str, *services: Service) -> ServiceRunner:
    """A runner on a Database of its own (its own engine and connections), like a replica."""
    r = ServiceRunner(Database(url), list(services), settings=object())
    made.append(r)
    return r


# -- leadership ---------------------------------------------------------------------------------
def test_one_leader_per_service_and_the_other_takes_over_when_it_stops(db_url, runners) -> None:
    shared = {"active": 0, "max_active": 0}
    a = runner(runners, db_url, Probe(shared))
    b = runner(runners, db_url, Probe(shared))
    a.start()
    wait_for(lambda: a.run_count("probe") >= 1, "the first runner leads and runs")
    b.start()
    # several ticks with both running: only the leader runs the service
    runs_a = a.run_count("probe")
    wait_for(lambda: a.run_count("probe") >= runs_a + 5, "the leader keeps running")
    assert a.is_leader("probe") and not b.is_leader("probe")
    assert b.run_count("probe") == 0
    assert shared["max_active"] == 1

    a.stop()
    assert not a.is_leader("probe")
    wait_for(lambda: b.is_leader("probe"), "the second runner takes over", timeout=5)
    wait_for(lambda: b.run_count("probe") >= 3, "the new leader runs the service")
    assert shared["max_active"] == 1


def test_services_with_different_names_are_led_independently(db_url, runners) -> None:
    class Other(Probe):
        name = "other"

    a = runner(runners, db_url, Probe())
    b = runner(runners, db_url, Other(), Probe())
    a.start()
    wait_for(lambda: a.is_leader("probe"), "the first runner leads probe")
    b.start()
    wait_for(lambda: b.run_count("other") >= 2, "the second runner runs the other service")
    assert b.is_leader("other") and not b.is_leader("probe")
    assert lock_key("probe") != lock_key("other")


def test_stop_is_prompt_and_frees_the_lock(db_url, runners) -> None:
    slow = Probe()
    slow.interval = 3600  # a long sleep between runs must not delay stop()
    a = runner(runners, db_url, slow)
    a.start()
    wait_for(lambda: a.run_count("probe") == 1, "the first run, at start")
    t0 = time.monotonic()
    a.stop(timeout=5)
    assert time.monotonic() - t0 < 1.0
    assert not a.is_leader("probe")
    b = runner(runners, db_url, Probe())
    b.start()
    wait_for(lambda: b.is_leader("probe"), "another runner leads at once", timeout=2)


_REPLICA = textwrap.dedent(
    """
    import sys, time
    from legato.server.services.base import Service, ServiceRunner
    from legato.store.database import Database

    class Probe(Service):
        name = "probe"
        interval = 0.05
        def run_once(self, db):
            pass

    runner = ServiceRunner(Database(sys.argv[1]), [Probe()], settings=object())
    runner.start()
    while not runner.is_leader("probe"):
        time.sleep(0.01)
    print("leader", flush=True)
    time.sleep(600)
    """
)


def test_when_the_leaders_process_dies_another_replica_takes_over(db_url, runners) -> None:
    Database(db_url).ensure_ready()  # not raced by the two processes' first open
    replica = subprocess.Popen(
        [sys.executable, "-c", _REPLICA, db_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert replica.stdout is not None
        assert replica.stdout.readline().strip() == "leader"
        here = runner(runners, db_url, Probe())
        here.start()
        time.sleep(10 * TICK)  # ten ticks of trying: the other process still leads
        assert not here.is_leader("probe") and here.run_count("probe") == 0
        os.kill(replica.pid, signal.SIGKILL)  # no clean-up: only the OS frees its locks
        replica.wait(10)
        wait_for(lambda: here.run_count("probe") >= 1, "this replica takes over", timeout=10)
    finally:
        if replica.poll() is None:
            replica.kill()
            replica.wait(10)


@pytest.mark.postgres
def test_a_leader_that_lost_its_connection_steps_down(postgres_url, runners) -> None:
    a = runner(runners, postgres_url, Probe())
    a.start()
    wait_for(lambda: a.is_leader("probe"), "a leads")
    b = runner(runners, postgres_url, Probe())
    b.start()
    # the database ends a's session (a restart, a network cut): its lock is gone with it
    admin = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).all()
        assert len(killed) == 1
    finally:
        admin.dispose()
    wait_for(lambda: b.is_leader("probe"), "b takes over", timeout=5)
    time.sleep(5 * TICK)
    assert not a.is_leader("probe"), "a must notice that its session, and lock, are gone"
    runs_b = b.run_count("probe")
    wait_for(lambda: b.run_count("probe") > runs_b + 2, "b keeps leading")
    assert not a.is_leader("probe")


def test_the_sqlite_lock_file_sits_next_to_the_database(legato_home, runners) -> None:
    url = f"sqlite:///{legato_home / 'legato.db'}"
    a = runner(runners, url, Probe())
    a.start()
    wait_for(lambda: a.is_leader("probe"), "a leads")
    assert (legato_home / "legato.db.services.probe.lock").exists()


# -- the loop -----------------------------------------------------------------------------------
def test_an_exception_in_run_once_is_logged_and_the_loop_goes_on(db_url, runners, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="legato.server.services")
    probe = Probe(fail_on={1, 3})
    a = runner(runners, db_url, probe)
    a.start()
    wait_for(lambda: a.run_count("probe") >= 3, "runs after the failures")
    assert probe.calls >= 5  # two failed, three completed: the thread lived through both
    status = a.status()["probe"]
    assert status["failures"] == 2
    assert "probe failure number 3" in status["last_error"]
    failures = [r for r in caplog.records if "probe" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)
    assert a.is_leader("probe")


def test_service_names_must_be_unique(legato_home) -> None:
    with pytest.raises(ValueError, match="probe"):
        ServiceRunner(Database(f"sqlite:///{legato_home / 'x.db'}"), [Probe(), Probe()], object())


# -- retention ----------------------------------------------------------------------------------
@task
def step(x: int) -> int:
    return x


@flow(name="service-etl")
def etl() -> str:
    step(1)
    return current_flow_run.id


def test_default_services_are_the_enabled_ones(monkeypatch) -> None:
    from legato.settings import get_settings, reset_settings_cache

    always = ["scheduler", "late-runs", "crash-detection", "notifications"]  # deployments' runs need them
    assert [s.name for s in default_services(get_settings())] == always
    assert not RetentionService().enabled(get_settings())
    monkeypatch.setenv("LEGATO_RETENTION_LOGS_DAYS", "7")
    reset_settings_cache()
    svc, *rest = default_services(get_settings())
    assert isinstance(svc, RetentionService) and svc.interval == 3600
    assert [s.name for s in rest] == always


def test_the_retention_service_prunes_on_the_settings(history, monkeypatch, runners) -> None:
    from legato.settings import get_settings, reset_settings_cache
    from legato.store.database import get_database

    monkeypatch.setenv("LEGATO_RETENTION_FLOW_RUNS_DAYS", "30")
    reset_settings_cache()
    s = get_settings()
    old, recent = etl(), etl()
    db = get_database(s.resolved_database_url, s.database_busy_timeout)
    fr = models.flow_run
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=45)
    with db.write() as conn:
        conn.execute(sa.update(fr).where(fr.c.id == old).values(end_time=long_ago, created=long_ago))

    services = default_services(s)
    r = ServiceRunner(db, services, s)
    runners.append(r)
    r.start()  # the first run is at start, not an interval later
    wait_for(lambda: r.run_count("retention") >= 1, "the retention service ran")

    with db.read() as conn:
        left = {str(i) for i in conn.scalars(sa.select(fr.c.id))}
        tasks = conn.execute(sa.select(sa.func.count()).select_from(models.task_run)).scalar()
    assert left == {recent}
    assert tasks == 1
