"""Futures for submitted task runs: ``result()``, ``wait()``, ``state``."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from .exceptions import UnfinishedRun
from .states import Crashed, Pending, Running, State

__all__ = ["LegatoFuture", "LegatoFutureList", "wait", "as_completed", "resolve_futures_to_results"]


class LegatoFuture:
    """The promise of a task run's final state. Submitted with ``task.submit()``/``task.map()``."""

    __slots__ = ("task_run_id", "name", "_future", "observed", "__weakref__")

    def __init__(self, task_run_id: str, name: str, future: cf.Future) -> None:
        self.task_run_id = task_run_id
        self.name = name
        self._future = future
        # set once the user looked at the outcome; unobserved failures fail the flow
        self.observed = False

    def wait(self, timeout: float | None = None) -> None:
        """Block until the task run is final (or ``timeout`` seconds pass)."""
        self.observed = True
        try:
            self._future.result(timeout)
        except cf.TimeoutError:
            return

    def done(self) -> bool:
        return self._future.done()

    @property
    def state(self) -> State:
        """The final state if the run finished, else a Pending/Running placeholder."""
        self.observed = True
        if self._future.done():
            return self.final_state()
        if self._future.running():
            return Running()
        return Pending()

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """The task's return value; re-raises the task's exception if it failed."""
        self.observed = True
        try:
            state: State = self._future.result(timeout)
        except cf.TimeoutError:
            raise UnfinishedRun(
                f"Task run {self.name!r} did not finish within {timeout} s."
            ) from None
        return state.result(raise_on_failure=raise_on_failure)

    def final_state(self) -> State:
        """The final state; a run whose worker raised (KeyboardInterrupt, SystemExit) or that
        was cancelled before it started counts as Crashed. Waits for the run to finish."""
        try:
            return self._future.result()
        except BaseException as exc:  # noqa: BLE001 - described as a state
            return Crashed(f"The task run did not finish: {type(exc).__name__}.", data=exc)

    def add_done_callback(self, fn: Any) -> None:
        self._future.add_done_callback(lambda _f: fn(self))

    def __repr__(self) -> str:
        return f"LegatoFuture({self.name!r}, done={self._future.done()})"


# Prefect users import this name
PrefectFuture = LegatoFuture


class LegatoFutureList(list):
    """What ``task.map()`` returns: a list of futures with list-wide ``wait`` and ``result``."""

    def wait(self, timeout: float | None = None) -> None:
        wait(self, timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        return [f.result(timeout, raise_on_failure) for f in self]


class DoneAndNotDoneFutures(NamedTuple):
    done: set[LegatoFuture]
    not_done: set[LegatoFuture]


def wait(futures: Iterable[LegatoFuture], timeout: float | None = None) -> DoneAndNotDoneFutures:
    futs = list(futures)
    for f in futs:
        f.observed = True
    by_cf = {f._future: f for f in futs}
    done, not_done = cf.wait(by_cf, timeout=timeout)
    return DoneAndNotDoneFutures({by_cf[d] for d in done}, {by_cf[n] for n in not_done})


def as_completed(futures: Iterable[LegatoFuture], timeout: float | None = None) -> Iterator[LegatoFuture]:
    futs = list(futures)
    by_cf = {f._future: f for f in futs}
    for done in cf.as_completed(by_cf, timeout=timeout):
        f = by_cf[done]
        f.observed = True
        yield f


def resolve_futures_to_results(obj: Any) -> Any:
    """Replace futures inside lists/tuples/dicts/sets with their results."""
    if isinstance(obj, LegatoFuture):
        return obj.result()
    if isinstance(obj, list):
        return [resolve_futures_to_results(o) for o in obj]
    if isinstance(obj, tuple):
        return tuple(resolve_futures_to_results(o) for o in obj)
    if isinstance(obj, dict):
        return {k: resolve_futures_to_results(v) for k, v in obj.items()}
    return obj
