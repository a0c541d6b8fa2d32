"""Task runners: where submitted task runs execute.

``ThreadPoolTaskRunner`` (the default) runs them on a pool of threads; ``SequentialTaskRunner``
runs each one at submission, in the caller's thread. ``ConcurrentTaskRunner`` is Prefect 2's name
for the thread pool.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import os
import threading
from collections.abc import Callable
from typing import Any

from ..settings import get_settings

__all__ = ["TaskRunner", "ThreadPoolTaskRunner", "SequentialTaskRunner", "ConcurrentTaskRunner"]


class TaskRunner:
    """Base class: ``submit(fn)`` runs ``fn()`` (which returns a final State) somewhere."""

    name = "task runner"

    def duplicate(self) -> TaskRunner:
        """A fresh runner with the same configuration (each flow run gets its own)."""
        return type(self)()

    def submit(self, fn: Callable[[], Any]) -> cf.Future:
        raise NotImplementedError

    def shutdown(self, wait: bool = True) -> None:  # noqa: B027 - optional
        pass

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)


class ThreadPoolTaskRunner(TaskRunner):
    name = "thread pool"

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers
        self._pool: cf.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def duplicate(self) -> ThreadPoolTaskRunner:
        return ThreadPoolTaskRunner(self.max_workers)

    def _executor(self) -> cf.ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    workers = self.max_workers
                    if workers is None:
                        workers = get_settings().task_runner_max_workers or min(
                            32, (os.cpu_count() or 1) + 4
                        )
                    self._pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="legato-task")
                pool = self._pool
        return pool

    def submit(self, fn: Callable[[], Any]) -> cf.Future:
        ctx = contextvars.copy_context()
        return self._executor().submit(ctx.run, fn)

    def shutdown(self, wait: bool = True) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=not wait)


ConcurrentTaskRunner = ThreadPoolTaskRunner


class SequentialTaskRunner(TaskRunner):
    """Runs each submitted task run immediately, in the submitting thread."""

    name = "sequential"

    def submit(self, fn: Callable[[], Any]) -> cf.Future:
        fut: cf.Future = cf.Future()
        fut.set_running_or_notify_cancel()
        try:
            fut.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - the future carries it to the caller
            fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt / SystemExit: stop the flow now, as a direct call does
        return fut
