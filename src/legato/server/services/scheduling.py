"""The services that keep deployments' runs moving: the scheduler (runs made ahead of time from
the schedules), late runs, and crash detection (runs whose heartbeats stopped).

Each runs in one server at a time (see base.py), and none depends on that for correctness: a run
per (deployment, scheduled time) is held by a unique index, and every state change is decided
on the locked row, so two replicas doing the same work at once make each change once.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
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
    (``LEGATO_FLOW_RUN_HEARTBEAT_SECONDS``), retrying those whose deployment asks for it.

    Heartbeats cannot arrive while this server (or its database) is away, so silence is only
    counted from when it can hear them: after the service starts, takes over the leadership, or
    resumes from a pause of its own (a pass that failed, a tick that came late: the process
    was stopped, the machine suspended, the database unreachable), every running run is
    granted a fresh grace of two heartbeat intervals before it can be found silent."""

    name = "crash-detection"

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.interval = max(settings.flow_run_heartbeat_seconds / 2, 0.05)
        self._last_pass: float | None = None  # monotonic time of the last completed pass
        self._listening_since = 0.0

    def run_once(self, db: Any) -> None:
        from ...core.run_control import detect_crashed_runs

        timeout = 2 * self.settings.flow_run_heartbeat_seconds
        now = time.monotonic()
        # a pass late by more than half a heartbeat interval (passes come every half interval)
        # is a pause that could have cost a run its margin (silence counts after 2 intervals);
        # 1.5 s at least: a busy machine's scheduling slack is no pause
        pause = max(self.settings.flow_run_heartbeat_seconds, 1.5)
        if self._last_pass is None or now - self._last_pass > pause:
            self._listening_since = now
            if self._last_pass is not None:
                log.warning("crash detection paused for %.0f s: every running flow run gets "
                            "%g s to send a heartbeat again", now - self._last_pass, timeout)
        self._last_pass = None  # (a pass that fails is a pause: the next one grants grace)
        if now - self._listening_since >= timeout:
            crashed = detect_crashed_runs(db, heartbeat_timeout=timeout)
            for run_id in crashed:
                log.warning("flow run %s crashed: no heartbeat", run_id)
        self._last_pass = now
