"""The current flow run: ``id``, ``name``, ``flow_name``, ``parameters``, ``tags``,
``run_count``, ``parent_flow_run_id``, ``parent_task_run_id`` (None/empty outside a flow run)."""

from typing import Any

from ..context import flow_run_ctx, task_run_ctx

_DEFAULTS: dict[str, Any] = {
    "id": None, "name": None, "flow_name": None, "parameters": {}, "tags": [], "run_count": 0,
    "parent_flow_run_id": None, "parent_task_run_id": None,
}


def __getattr__(name: str) -> Any:
    if name not in _DEFAULTS:
        raise AttributeError(f"legato.runtime.flow_run has no attribute {name!r}; "
                             f"available: {', '.join(_DEFAULTS)}")
    ctx = flow_run_ctx.get()
    if ctx is None:
        t = task_run_ctx.get()
        ctx = t.flow_run_context if t else None
    if ctx is None:
        value = _DEFAULTS[name]
        return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value
    return getattr(ctx.flow_run, name)
