"""Legato: a workflow orchestrator for Python.

``from legato import flow, task, get_run_logger`` is all a script needs; runs are recorded in a
SQLite history under ``LEGATO_HOME`` (``~/.legato``) with nothing to start.
"""

from __future__ import annotations

from .context import get_run_context, tags
from .flows import Flow, flow
from .futures import LegatoFuture, LegatoFutureList, as_completed, wait
from .logging import get_logger, get_run_logger
from .states import State
from .tasks import Task, task
from .utilities.annotations import allow_failure, quote, unmapped

__version__ = "0.1.0"

__all__ = [
    "Flow",
    "LegatoFuture",
    "LegatoFutureList",
    "State",
    "Task",
    "__version__",
    "allow_failure",
    "as_completed",
    "flow",
    "get_logger",
    "get_run_context",
    "get_run_logger",
    "quote",
    "tags",
    "task",
    "unmapped",
    "wait",
]
