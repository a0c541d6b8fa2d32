"""The retention service: prunes the run history on the ``LEGATO_RETENTION_*`` settings."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from .base import Service

log = logging.getLogger("legato.server.services")

#: setting name -> prune() keyword
_SETTINGS = {
    "retention_flow_runs_days": "flow_runs_older_than",
    "retention_task_runs_days": "task_runs_older_than",
    "retention_logs_days": "logs_older_than",
}


def retention_ages(settings: Any) -> dict[str, dt.timedelta | None]:
    """prune()'s age arguments from the settings (None: keep that kind forever)."""
    out: dict[str, dt.timedelta | None] = {}
    for setting, keyword in _SETTINGS.items():
        days = getattr(settings, setting, None)
        out[keyword] = None if days is None else dt.timedelta(days=float(days))
    return out


class RetentionService(Service):
    """Deletes finished runs, their states and logs, and old log lines, past the configured ages
    (see legato.store.retention.prune), every ``interval`` seconds (an hour by default).

    ``settings``: where the ages come from; by default the current settings at each run."""

    name = "retention"

    def __init__(
        self, interval: float = 3600.0, *, settings: Any = None, batch_size: int = 5000
    ) -> None:
        self.settings = settings
        self.interval = interval
        self.batch_size = batch_size

    def _settings(self) -> Any:
        if self.settings is not None:
            return self.settings
        from ...settings import get_settings

        return get_settings()

    def enabled(self, settings: Any) -> bool:
        return any(getattr(settings, name, None) is not None for name in _SETTINGS)

    def run_once(self, db: Any) -> None:
        from ...store.retention import prune  # lazy: SQLAlchemy, loaded by the server anyway

        ages = retention_ages(self._settings())
        if all(age is None for age in ages.values()):
            return
        result = prune(db, **ages, batch_size=self.batch_size)
        if result.total:
            log.info(
                "Retention deleted %d flow runs, %d task runs, %d states, %d log lines and "
                "%d expired cache entries",
                result.flow_runs,
                result.task_runs,
                result.states,
                result.logs,
                result.cache_entries,
            )
