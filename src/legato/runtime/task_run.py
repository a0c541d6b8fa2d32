"""The current task run: ``id``, ``name``, ``task_key``, ``flow_run_id``, ``tags``,
``run_count``, ``parameters`` (None/empty outside a task run)."""

from typing import Any

from ..context import task_run_ctx

_DEFAULTS: dict[str, Any] = {
    "id": None, "name": None, "task_key": None, "flow_run_id": None, "tags": [],
    "run_count": 0, "parameters": {},
}


def __getattr__(name: str) -> Any:
    if name not in _DEFAULTS:
        raise AttributeError(f"legato.runtime.task_run has no attribute {name!r}; "
                             f"available: {', '.join(_DEFAULTS)}")
    ctx = task_run_ctx.get()
    if ctx is None:
        value = _DEFAULTS[name]
        return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value
    return getattr(ctx.task_run, name)
