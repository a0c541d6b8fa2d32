"""The task run engine: one state machine, driven by a sync or an async loop.

A task run goes Pending -> Running -> Completed (or Cached straight from Pending; or Failed,
TimedOut, Crashed). A failed attempt with retries left goes Running -> AwaitingRetry -> Retrying.
The steps live on :class:`TaskRunEngine`; the attempt loop (sync or async) is engine/drivers.py,
call the user's function and how they sleep between attempts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from .. import states as S
from ..context import FlowRunContext, TaskRunContext, TaskRunInfo, tags_ctx, task_run_ctx
from ..core.rules import Verdict
from ..exceptions import SerializationError, TaskTimeoutError, TerminationSignal
from ..ids import new_id
from ..logging import engine_log, patch_print, task_run_logger
from ..results import load_result, persist_result
from ..states import State, StateType
from .common import flow_run_cancelled, render_run_name, retry_delay, run_hooks
from .drivers import drive_async, drive_sync
from .inputs import UpstreamFailed, collect_inputs, resolve_parameters, wait_for_upstream
from .tracebacks import strip_internal_frames

_UTC = dt.timezone.utc
_PLAIN_RESULTS = (int, float, str, bytes, bool, type(None))


class TaskRunEngine:
    __slots__ = ("task", "flow_ctx", "client", "params", "wait_for", "info", "ctx", "logger",
                 "attempt", "cache_key", "persist", "settings", "call_args", "call_kwargs",
                 "_resolved")

    def __init__(self, task: Any, flow_ctx: FlowRunContext, params: dict[str, Any],
                 wait_for: Any = None, task_run_id: str | None = None) -> None:
        self.task = task
        self.flow_ctx = flow_ctx
        self.client = flow_ctx.client
        self.settings = flow_ctx.settings
        self.params = params
        if wait_for is not None and not isinstance(wait_for, (list, tuple, set)):
            wait_for = list(wait_for) if hasattr(wait_for, "__iter__") else [wait_for]
        self.wait_for = wait_for
        self.attempt = 0
        self.cache_key: str | None = None
        self.persist = False
        self._resolved = False
        self.call_args: tuple[Any, ...] = ()
        self.call_kwargs: dict[str, Any] = {}
        self._create(task_run_id or new_id())

    # -- steps -----------------------------------------------------------------------------------
    def _create(self, run_id: str) -> None:
        task, fctx = self.task, self.flow_ctx
        if task._default_retries:
            task.resolve_default_retries(self.settings)
        n = fctx.next_dynamic_key(task.task_key)
        if task.task_run_name is not None:
            name = render_run_name(task.task_run_name, self.params, "task run")
        else:
            name = f"{task.name}-{n}"
        tags = list(task.tags | tags_ctx.get()) if (task.tags or tags_ctx.get()) else []
        # upstream links (futures, results of earlier calls, wait_for) are all known now
        inputs = collect_inputs(self.params, fctx.results_by_id, self.wait_for)
        self.info = TaskRunInfo(run_id, name, task.task_key, fctx.flow_run.id, tags, inputs)
        self.ctx = TaskRunContext(task, self.info, self.params, fctx,
                                  task.log_prints if task.log_prints is not None else fctx.log_prints)
        self.logger = task_run_logger(self.ctx)
        if self.ctx.log_prints:
            patch_print()
        fctx.live_task_runs[run_id] = self
        self.client.create_task_run(
            id=run_id, flow_run_id=fctx.flow_run.id, task_key=task.task_key, name=name,
            dynamic_key=str(n), state=S.Pending(), tags=tags, task_inputs=inputs,
            empirical_policy=task.policy,
        )

    def begin(self) -> State | None:
        """Resolve inputs, consult the cache, go Running. A final state means: do not run."""
        task = self.task
        try:
            params = resolve_parameters(self.params, self.flow_ctx.results_by_id)
            if self.wait_for:
                wait_for_upstream(self.wait_for)
        except UpstreamFailed as up:
            return S.Failed(
                f"Upstream task run {up.name!r} ended in state {up.state.name}; this task run "
                "did not start.", name="NotReady", data=up.state.data if isinstance(
                    up.state.data, BaseException) else None,
            )
        self.params = params
        self.ctx.parameters = params
        self.info.parameters = params
        self.call_args, self.call_kwargs = task.binder.call_args(params)
        if task.cache_policy is not None:
            cached = self._cache_lookup()
            if cached is not None:
                return cached
        self.persist = task.should_persist(self.settings, self.cache_key is not None)
        return self._start_attempt()

    def _start_attempt(self) -> State | None:
        """Go Running (or Retrying). If the history refuses - the flow run already ended this
        task run - the user's code must not run: returns the state to finish with."""
        self.attempt += 1
        self.info.run_count = self.attempt
        state = S.Running() if self.attempt == 1 else S.Retrying()
        decision = self.client.set_task_run_state(self.info.id, state)
        if decision.verdict is Verdict.WAIT:
            decision = self._wait_for_slot(state, decision)
        if decision.verdict is Verdict.REJECT:
            return S.Crashed(f"The task run was not started: {decision.reason}")
        return None

    def _wait_for_slot(self, state: State, decision: Any) -> Any:
        """A tag concurrency limit is full: ask again until a slot frees (the wait is logged
        once, and the task run stays Pending meanwhile)."""
        self.logger.info("Waiting for a concurrency slot: %s", decision.reason)
        while decision.verdict is Verdict.WAIT:
            time.sleep(decision.retry_after or 0.5)
            state = S.Running() if self.attempt == 1 else S.Retrying()
            decision = self.client.set_task_run_state(self.info.id, state)
        return decision

    def _cache_lookup(self) -> State | None:
        task = self.task
        try:
            key = task.cache_policy.compute_key(self.ctx, self.params, self.flow_ctx.parameters)
        except Exception as exc:  # noqa: BLE001 - a broken key function must not kill the run
            self.logger.warning(
                "Computing the cache key raised %s: %s; running without the cache.",
                type(exc).__name__, exc,
            )
            key = None
        if key is None:
            return None
        self.cache_key = key
        if task.refresh_cache:
            return None
        entry = self.client.read_cache(key)
        if entry is None:
            return None
        try:
            value = load_result(entry["result"])
        except SerializationError as exc:
            self.logger.warning("Cached result unusable (%s); running the task again.", exc)
            return None
        self.client.set_task_run_cache_key(self.info.id, key, entry.get("expiration"))
        return S.Cached(data=value, result_ref=entry["result"])

    def on_success(self, value: Any) -> State:
        if isinstance(value, State):
            return value
        ref = None
        if self.persist:
            try:
                ref = persist_result(value, storage=self.task.result_storage,
                                     serializer=self.task.result_serializer)
            except SerializationError as exc:
                return S.Failed(str(exc), data=exc)
            if self.cache_key is not None:
                exp = self.task.cache_expiration
                expiration = dt.datetime.now(_UTC) + exp if exp is not None else None
                self.client.write_cache(self.cache_key, task_run_id=self.info.id, result=ref,
                                        expiration=expiration)
                self.client.set_task_run_cache_key(self.info.id, self.cache_key, expiration)
        state = S.Completed(data=value)
        if ref is not None:
            state.details["result_ref"] = ref
        return state

    def on_exception(self, exc: BaseException) -> tuple[State | None, float]:
        """The final state for this failure, or (None, delay) to try again."""
        if isinstance(exc, TerminationSignal) and flow_run_cancelled(
                self.client, self.flow_ctx.flow_run.id):
            # its flow run's worker stopped the process for a cancel
            return S.Cancelled("The flow run was cancelled before this task run finished.",
                               data=exc), 0.0
        if not isinstance(exc, Exception):
            return S.Crashed(f"Execution was interrupted by {type(exc).__name__}.", data=exc), 0.0
        strip_internal_frames(exc)
        task = self.task
        if isinstance(exc, TaskTimeoutError):
            state = S.TimedOut(str(exc), data=exc)
        else:
            state = S.Failed(f"Task run encountered an exception {type(exc).__name__}: {exc}",
                             data=exc)
        retries = task.retries
        if self.attempt <= retries and self._should_retry(state):
            delay = retry_delay(task.retry_delay_seconds, retries, self.attempt,
                                task.retry_jitter_factor)
            self.logger.error(
                "Task run failed with exception: %s - Retry %d/%d will start %s",
                _short(exc), self.attempt, retries,
                f"{delay:g} second(s) from now" if delay else "immediately",
                exc_info=exc,
            )
            when = dt.datetime.now(_UTC) + dt.timedelta(seconds=delay)
            self.client.set_task_run_state(
                self.info.id,
                S.AwaitingRetry(f"Retry {self.attempt}/{retries}: {state.message}",
                                scheduled_time=when.isoformat()),
            )
            return None, delay
        if retries and self.attempt > retries:
            self.logger.error("Task run failed after %d attempts: %s", self.attempt, _short(exc),
                              exc_info=exc)
        else:
            self.logger.error("Task run failed with exception: %s", _short(exc), exc_info=exc)
        return state, 0.0

    def _should_retry(self, state: State) -> bool:
        cond = self.task.retry_condition_fn
        if cond is None:
            return True
        try:
            return bool(cond(self.task, self.info, state))
        except Exception as exc:  # noqa: BLE001 - reported; no retry
            self.logger.error("retry_condition_fn raised %s: %s; not retrying.",
                              type(exc).__name__, exc)
            return False

    def finish(self, state: State) -> State:
        ref = state.details.pop("result_ref", None)
        decision = self.client.set_task_run_state(self.info.id, state, result=ref)
        self.flow_ctx.live_task_runs.pop(self.info.id, None)
        if decision.verdict is Verdict.REJECT:
            # the flow run already settled this run (it timed out or was interrupted)
            self.logger.warning("Finished in state %s after the run had already ended (%s); "
                                "this outcome is discarded.", _state_repr(state), decision.reason)
            return state
        engine_log(self.logger, 20 if state.type is StateType.COMPLETED else 40,
                   f"Finished in state {_state_repr(state)}")
        if state.type is StateType.COMPLETED:
            value = state.data
            if type(value) not in _PLAIN_RESULTS:
                self.flow_ctx.results_by_id[id(value)] = (value, self.info.id)
            if self.task.on_completion:
                run_hooks(self.task.on_completion, (self.task, self.info, state), self.logger,
                          "on_completion", self.ctx)
        elif state.type is StateType.FAILED and self.task.on_failure:
            run_hooks(self.task.on_failure, (self.task, self.info, state), self.logger,
                      "on_failure", self.ctx)
        return state

    # -- drivers ---------------------------------------------------------------------------------
    # -- what the attempt loop (engine/drivers.py) needs -----------------------------------------
    @property
    def fn(self) -> Any:
        return self.task.fn

    @property
    def timeout(self) -> float | None:
        return self.task.timeout_seconds

    def enter(self) -> Any:
        return task_run_ctx.set(self.ctx)

    def exit(self, token: Any) -> None:
        task_run_ctx.reset(token)

    def next_attempt(self) -> State | None:
        return self._start_attempt()

    def crashed(self, exc: BaseException) -> State:
        raise exc  # a task has no life outside its attempts: the flow settles it

    def complete(self, state: State) -> State:
        self.finish(state)
        if state.type is StateType.CRASHED and isinstance(state.data, BaseException) or (
                isinstance(state.data, TerminationSignal)):
            raise state.data  # the flow run stops too (a cancel's signal reaches it)
        return state

    def run_sync(self) -> State:
        return drive_sync(self)

    async def run_async(self) -> State:
        return await drive_async(self)

    def run_in_worker(self) -> State:
        """Entry point on a task runner's thread: async tasks get an event loop of their own."""
        if self.task.is_async:
            return asyncio.run(self.run_async())
        return self.run_sync()

    def timeout_error(self) -> TaskTimeoutError:
        return TaskTimeoutError(
            f"Task run {self.info.name!r} exceeded its timeout of {self.task.timeout_seconds:g} "
            "second(s) and was stopped."
        )


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _state_repr(state: State) -> str:
    return f"{state.name}({'message=' + repr(state.message) if state.message else ''})"
