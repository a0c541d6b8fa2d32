"""The server's background services (see base.py for how they run and who leads them).

A new service subclasses :class:`~legato.server.services.base.Service` and is added to
:func:`default_services`; the server starts every enabled one at start-up.
"""

from __future__ import annotations

from typing import Any

from .base import Service, ServiceRunner
from .notifications import NotificationService
from .retention import RetentionService
from .scheduling import CrashDetectionService, LateRunsService, SchedulerService

__all__ = ["CrashDetectionService", "LateRunsService", "NotificationService", "RetentionService",
           "SchedulerService", "Service", "ServiceRunner", "default_services"]


def default_services(settings: Any = None) -> list[Service]:
    """The services a server runs with these settings: the enabled ones."""
    if settings is None:
        from ...settings import get_settings

        settings = get_settings()
    candidates: list[Service] = [
        RetentionService(settings=settings), SchedulerService(settings),
        LateRunsService(settings), CrashDetectionService(settings),
        NotificationService(settings)]
    return [svc for svc in candidates if svc.enabled(settings)]
