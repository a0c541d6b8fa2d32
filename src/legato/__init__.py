"""Legato: a workflow orchestrator for Python.

``from legato import flow, task, get_run_logger`` is all a script needs; runs are recorded in a
SQLite history under ``LEGATO_HOME`` (``~/.legato``) with nothing to start.

The names below are loaded on first use (PEP 562), so ``import legato`` and the ``legato`` command
start fast and importing does nothing but define things.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Flow": "flows",
    "flow": "flows",
    "Task": "tasks",
    "task": "tasks",
    "State": "states",
    "LegatoFuture": "futures",
    "LegatoFutureList": "futures",
    "as_completed": "futures",
    "wait": "futures",
    "get_logger": "logging",
    "get_run_logger": "logging",
    "get_run_context": "context",
    "tags": "context",
    "allow_failure": "utilities.annotations",
    "quote": "utilities.annotations",
    "unmapped": "utilities.annotations",
    "serve": "deployments.runner",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .context import get_run_context as get_run_context
    from .context import tags as tags
    from .deployments.runner import serve as serve
    from .flows import Flow as Flow
    from .flows import flow as flow
    from .futures import LegatoFuture as LegatoFuture
    from .futures import LegatoFutureList as LegatoFutureList
    from .futures import as_completed as as_completed
    from .futures import wait as wait
    from .logging import get_logger as get_logger
    from .logging import get_run_logger as get_run_logger
    from .states import State as State
    from .tasks import Task as Task
    from .tasks import task as task
    from .utilities.annotations import allow_failure as allow_failure
    from .utilities.annotations import quote as quote
    from .utilities.annotations import unmapped as unmapped


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'legato' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
