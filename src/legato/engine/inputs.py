"""Resolving a task's inputs: futures become results, and upstream runs are recorded."""

from __future__ import annotations

from typing import Any

from ..futures import LegatoFuture, LegatoFutureList
from ..states import State
from ..utilities.annotations import allow_failure, quote


class UpstreamFailed(Exception):
    def __init__(self, name: str, state: State) -> None:
        super().__init__(name)
        self.name = name
        self.state = state


_PLAIN = (int, float, str, bytes, bool, type(None))


def resolve(value: Any, results_by_id: dict[int, Any] | None, allow: bool = False,
            depth: int = 0) -> Any:
    """``value`` with futures replaced by their results (a failed one raises UpstreamFailed
    unless wrapped in allow_failure). Upstream links are recorded earlier, by collect()."""
    cls = type(value)
    if cls in _PLAIN:
        return value
    if cls is LegatoFuture:
        value.observed = True
        state = value.final_state()
        if state.is_completed():
            return state.result()
        if allow:
            return state.result(raise_on_failure=False)
        raise UpstreamFailed(value.name, state)
    if cls is allow_failure:
        return resolve(value.value, results_by_id, True, depth)
    if cls is quote:
        return value.value
    if isinstance(value, State):
        return value.result(raise_on_failure=not allow)
    if results_by_id:
        hit = results_by_id.get(id(value))
        if hit is not None and hit[0] is value:
            return value  # an earlier task's result: passed on as it is, never copied
    if depth < 3:
        if cls is list or cls is LegatoFutureList:
            return [resolve(v, results_by_id, allow, depth + 1) for v in value]
        if cls is tuple:
            return tuple(resolve(v, results_by_id, allow, depth + 1) for v in value)
        if cls is dict:
            return {k: resolve(v, results_by_id, allow, depth + 1) for k, v in value.items()}
        if cls is set:
            return {resolve(v, results_by_id, allow, depth + 1) for v in value}
    return value


def collect(value: Any, upstream: list[dict[str, Any]], results_by_id: dict[int, Any] | None,
            depth: int = 0) -> None:
    """Append the upstream task runs ``value`` refers to, without waiting for anything: what
    :func:`resolve` will link, known when the task run is created."""
    cls = type(value)
    if cls in _PLAIN:
        return
    if cls is LegatoFuture:
        upstream.append({"input_type": "task_run", "id": value.task_run_id})
        return
    if cls is allow_failure:
        collect(value.value, upstream, results_by_id, depth)
        return
    if cls is quote or isinstance(value, State):
        return
    if results_by_id:
        hit = results_by_id.get(id(value))
        if hit is not None and hit[0] is value:
            upstream.append({"input_type": "task_run", "id": hit[1]})
            return
    if depth < 3:
        if cls is dict:
            value = value.values()
        elif cls not in (list, tuple, set, LegatoFutureList):
            return
        for v in value:
            if type(v) not in _PLAIN:
                collect(v, upstream, results_by_id, depth + 1)


def collect_inputs(params: dict[str, Any], results_by_id: dict[int, Any] | None,
                   wait_for: Any = None) -> dict[str, list[dict[str, Any]]]:
    """task_inputs for the history: which upstream task run feeds which parameter."""
    inputs: dict[str, list[dict[str, Any]]] = {}
    for name, value in params.items():
        if type(value) in _PLAIN:
            continue
        up: list[dict[str, Any]] = []
        collect(value, up, results_by_id)
        if up:
            inputs[name] = up
    if wait_for:
        up = []
        for item in wait_for:
            collect(item, up, None)
        if up:
            inputs["wait_for"] = up
    return inputs


def resolve_parameters(params: dict[str, Any],
                       results_by_id: dict[int, Any] | None) -> dict[str, Any]:
    """Every parameter resolved (futures waited for and replaced by their results)."""
    return {name: value if type(value) in _PLAIN else resolve(value, results_by_id)
            for name, value in params.items()}


def wait_for_upstream(wait_for: Any) -> None:
    """Block on ``wait_for=`` futures; a failed one (not wrapped in allow_failure) raises."""
    for item in wait_for or ():
        resolve(item, None)
