"""The services that keep deployments' runs moving: the scheduler (runs made ahead of time from
the schedules), late runs, and crash detection (runs whose heartbeats stopped).

Each runs in one server at a time (see base.py), and none depends on that for correctness: a run
per (deployment, scheduled time) is held by a unique index, and every state change is decided
on the locked row, so two replicas doing the same work at once make each change once.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from .base import Service

log = logging.getLogger("legato.server.services")


class SchedulerService(Service):
    """Makes every active schedule's upcoming runs (``LEGATO_SCHEDULER_HORIZON_SECONDS`` ahead,
    at least three each)."""

    name = "scheduler"

    def __init__(self, settings: Any, interval: float = 10.0) -> None:
        self.settings = settings
        self.interval = interval

    def run_once(self, db: Any) -> None:
        from ...core.run_control import schedule_runs  # lazy: croniter, dateutil

        made = schedule_runs(db, horizon=dt.timedelta(
            seconds=self.settings.scheduler_horizon_seconds))
        if made:
            log.info("scheduler: made %d scheduled flow run(s)", made)


class LateRunsService(Service):
    """Marks Late the scheduled runs not started ``LEGATO_LATE_RUNS_GRACE_SECONDS`` after
    their time."""

    name = "late-runs"

    def __init__(self, settings: Any, interval: float = 5.0) -> None:
        self.settings = settings
        self.interval = interval

    def run_once(self, db: Any) -> None:
        from ...core.run_control import mark_late_runs

        mark_late_runs(db, grace=dt.timedelta(seconds=self.settings.late_runs_grace_seconds))


class CrashDetectionService(Service):
    """Marks Crashed the running flow runs silent for two heartbeat intervals
    (``LEGATO_FLOW_RUN_HEARTBEAT_SECONDS``), retrying those whose deployment asks for it."""

    name = "crash-detection"

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.interval = max(settings.flow_run_heartbeat_seconds / 2, 0.05)

    def run_once(self, db: Any) -> None:
        from ...core.run_control import detect_crashed_runs

        crashed = detect_crashed_runs(
            db, heartbeat_timeout=2 * self.settings.flow_run_heartbeat_seconds)
        for run_id in crashed:
            log.warning("flow run %s crashed: no heartbeat", run_id)
