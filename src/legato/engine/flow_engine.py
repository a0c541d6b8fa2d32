"""The flow run engine: one state machine, driven by a sync or an async loop.

A flow run is created Pending, goes Running (committed before the user's code starts, so a
locked or broken history fails the call before anything runs), and ends Completed, Failed,
TimedOut, Cancelled or Crashed. When it ends, every task run it started has a final state and the
history holds every row: the flow call flushes before it returns.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import states as S
from ..client import get_client
from ..context import FlowRunContext, FlowRunInfo, flow_run_ctx, tags_ctx, task_run_ctx
from ..core.rules import Verdict
from ..exceptions import (
    CancelledRun,
    FlowTimeoutError,
    LegatoError,
    ParameterError,
    SerializationError,
    TerminationSignal,
)
from ..ids import new_id
from ..logging import engine_log, flow_run_logger, patch_print, setup_logging
from ..results import persist_result
from ..runners import ThreadPoolTaskRunner
from ..settings import get_settings
from ..states import State, StateType
from .common import (
    flow_run_cancelled,
    generate_run_name,
    render_run_name,
    retry_delay,
    run_hooks,
)
from .drivers import drive_async, drive_sync
from .heartbeat import heartbeats
from .parameters import jsonable_parameters
from .tracebacks import strip_internal_frames

_UTC = dt.timezone.utc


class FlowRunEngine:
    def __init__(self, flow: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                 adopt: dict[str, Any] | None = None) -> None:
        self.flow = flow
        # a deployment's run, made by the server and started (Running) by its worker: this
        # engine drives that run rather than creating one
        self.adopted = adopt
        self._adopted_started = False
        self.settings = get_settings()
        setup_logging(self.settings)
        self.client = get_client(self.settings)
        self.parent = flow_run_ctx.get()
        self.parent_task_run_id: str | None = None
        self.attempt = 0
        self.retries = (self.settings.flow_default_retries if flow._default_retries
                        else flow.retries)
        self.param_error: ParameterError | None = None
        self.run_id = adopt["id"] if adopt else new_id()
        # a deployment's run may be on a later attempt (a retry after a crash): count on from it
        self.attempt = (int(adopt.get("run_count") or 1) - 1) if adopt else 0
        self.created = False  # the flow run is in the client (buffered or written)
        self.started = False  # begin() went through: the run is recorded and Running
        try:
            params = flow.binder.bind(args, kwargs, f"Flow {flow.name!r}")
            if flow.validate_parameters:
                params = flow.validator().validate(params)
        except ParameterError as exc:
            self.param_error = exc
            params = _raw_params(flow, args, kwargs)
        self.params = params
        self.call_args, self.call_kwargs = (
            flow.binder.call_args(params) if self.param_error is None else ((), {})
        )

    # -- steps -----------------------------------------------------------------------------------
    def _open(self) -> State | None:
        flow, client = self.flow, self.client
        name = self._run_name()
        tags = sorted(flow.tags | tags_ctx.get() | set((self.adopted or {}).get("tags") or ()))
        if self.parent is not None:
            self._create_parent_task_run(tags)
        self.info = FlowRunInfo(self.run_id, name, flow.name, self.params, tags,
                                self.parent_task_run_id,
                                self.parent.flow_run.id if self.parent else None)
        log_prints = flow.log_prints if flow.log_prints is not None else (
            self.parent.log_prints if self.parent else self.settings.logging_log_prints)
        if log_prints:
            patch_print()
        runner = self._new_runner()
        self.ctx = FlowRunContext(flow, self.info, client, runner, self.settings, log_prints)
        self.logger = flow_run_logger(self.ctx)
        if self.adopted is None:
            client.create_flow_run(
                id=self.run_id, flow_name=flow.name, name=name, state=S.Pending(),
                parameters=jsonable_parameters(self.params), tags=tags,
                parent_task_run_id=self.parent_task_run_id, version=flow.version,
                empirical_policy={"retries": self.retries} if self.retries else None,
            )
        self.created = True
        if self.param_error is not None:
            return S.Failed(str(self.param_error), data=self.param_error)
        self._start_attempt()
        client.flush()  # the run is visible (and the history writable) before user code runs
        self.started = True
        heartbeats.add(self.run_id, client, self.settings.flow_run_heartbeat_seconds)
        self.logger.info("Beginning flow run %r for flow %r", name, flow.name)
        return None

    def begin(self) -> State | None:
        try:
            return self._open()
        except BaseException as exc:
            if self.created:  # e.g. the opening flush met a locked history
                try:
                    self.client.abandon_flow_run(self.run_id, exc)
                except Exception:  # noqa: BLE001 - the history itself may be what failed
                    pass
            if self.parent_task_run_id is not None:  # the subflow could not start: end its
                p = self.parent  # task run in the parent now, not when the parent ends
                assert p is not None
                p.live_task_runs.pop(self.parent_task_run_id, None)
                try:
                    p.client.set_task_run_state(self.parent_task_run_id, S.Failed(
                        f"The subflow run could not start: {type(exc).__name__}: {exc}",
                        data=exc))
                except Exception:  # noqa: BLE001 - the history itself may be what failed
                    pass
            raise

    def _new_runner(self) -> Any:
        """A task runner of this flow run's own (the flow's configuration, or a thread pool)."""
        runner = self.flow.task_runner
        return runner.duplicate() if runner else ThreadPoolTaskRunner()

    def _run_name(self) -> str:
        if self.adopted is not None:
            return self.adopted["name"]
        if self.flow.flow_run_name is not None and self.param_error is None:
            return render_run_name(self.flow.flow_run_name, self.params, "flow run")
        return generate_run_name()

    def _create_parent_task_run(self, tags: list[str]) -> None:
        """A subflow run appears in its parent as a task run that stands for it."""
        p = self.parent
        assert p is not None
        key = f"subflow:{self.flow.name}"
        n = p.next_dynamic_key(key)
        self.parent_task_run_id = new_id()
        p.client.create_task_run(
            id=self.parent_task_run_id, flow_run_id=p.flow_run.id, task_key=key,
            name=f"{self.flow.name}-{n}", dynamic_key=str(n), state=S.Pending(), tags=tags,
        )
        p.client.set_task_run_state(self.parent_task_run_id, S.Running())
        p.live_task_runs[self.parent_task_run_id] = self  # settled by the parent if we never end

    def _start_attempt(self) -> None:
        self.attempt += 1
        self.info.run_count = self.attempt
        if self.adopted is not None and not self._adopted_started:
            self._adopted_started = True
            return  # its worker's start made it Running (the claim token's one start)
        self.client.set_flow_run_state(
            self.run_id, S.Running() if self.attempt == 1 else S.Retrying()
        )

    def on_success(self, value: Any) -> State:
        self._settle_tasks()
        if isinstance(value, State):
            return value
        failed = [f for f in self.ctx.futures if not f.observed and f.done()
                  and not f.final_state().is_completed()]
        if failed:
            exc = _first_exception(failed)
            if isinstance(exc, BaseException) and not isinstance(exc, Exception):
                return S.Crashed(f"Execution was interrupted by {type(exc).__name__} in task "
                                 f"run {failed[0].name!r}.", data=exc)
            return S.Failed(
                f"{len(failed)} of {len(self.ctx.futures)} submitted task runs did not complete "
                f"(first: {failed[0].name!r} ended {failed[0].final_state().name}).",
                data=exc,
            )
        ref = None
        if self.flow.persist_result:
            try:
                ref = persist_result(value, storage=self.flow.result_storage,
                                     serializer=self.flow.result_serializer)
            except SerializationError as exc:
                return S.Failed(str(exc), data=exc)
        st = S.Completed(data=value)
        if ref is not None:
            st.details["result_ref"] = ref
        return st

    def on_exception(self, exc: BaseException) -> tuple[State | None, float]:
        if isinstance(exc, (TerminationSignal, CancelledRun)) and self._being_cancelled():
            # its worker stopped it for a cancel (or a subflow of it was cancelled so)
            return self._cancelled(exc), 0.0
        if not isinstance(exc, Exception) or isinstance(exc, FlowTimeoutError):
            # interrupted or out of time: do not wait for submitted work, abandon it
            self._abandon_tasks(
                "The flow run timed out before this task run finished."
                if isinstance(exc, FlowTimeoutError)
                else f"The flow run was interrupted by {type(exc).__name__} before this task "
                "run finished."
            )
        else:
            self._settle_tasks()
        self.ctx.futures = []  # this attempt's outcome is decided; a retry starts afresh
        if not isinstance(exc, Exception):
            return S.Crashed(f"Execution was interrupted by {type(exc).__name__}.", data=exc), 0.0
        strip_internal_frames(exc)
        if isinstance(exc, FlowTimeoutError):
            state = S.TimedOut(str(exc), data=exc)
        else:
            state = S.Failed(f"Flow run encountered an exception {type(exc).__name__}: {exc}",
                             data=exc)
        retries = self.retries
        if self.attempt <= retries:
            delay = retry_delay(self.flow.retry_delay_seconds, retries, self.attempt, None)
            self.logger.error("Flow run failed: %s - Retry %d/%d will start %s",
                              f"{type(exc).__name__}: {exc}", self.attempt, retries,
                              f"{delay:g} second(s) from now" if delay else "immediately",
                              exc_info=exc)
            self.client.set_flow_run_state(
                self.run_id, S.AwaitingRetry(f"Retry {self.attempt}/{retries}: {state.message}"))
            return None, delay
        self.logger.error("Encountered exception during execution: %s: %s",
                          type(exc).__name__, exc, exc_info=exc)
        return state, 0.0

    def _settle_tasks(self) -> None:
        """Wait for submitted task runs; anything still unfinished is marked Crashed."""
        for fut in list(self.ctx.futures):
            try:
                fut._future.result()
            except BaseException:  # noqa: BLE001 - its state was recorded by its engine
                pass
        self._crash_live("The flow run ended before this task run finished.")

    def _crash_live(self, message: str, cancelled: bool = False) -> None:
        """Mark every task run not yet final (and any subflow run still going) Crashed, or
        Cancelled when the flow run was cancelled."""
        end = S.Cancelled if cancelled else S.Crashed
        for run_id, eng in list(self.ctx.live_task_runs.items()):
            self.client.set_task_run_state(run_id, end(message))
            self.ctx.live_task_runs.pop(run_id, None)
            if isinstance(eng, FlowRunEngine) and eng.started:  # a subflow still running
                try:
                    self.client.set_flow_run_state(eng.run_id, end(
                        message.replace("task run", "subflow run")))
                except Exception:  # noqa: BLE001 - settling the rest matters more
                    pass
            _log_error(eng, f"Marked {'Cancelled' if cancelled else 'Crashed'}: {message}")

    def _being_cancelled(self) -> bool:
        """Whether this run was asked to cancel (a deployment's run, Cancelling in the store)."""
        if self.adopted is None and self.parent is None:
            return False  # a script's own flow run: nobody cancels it through the store
        return flow_run_cancelled(self.client, self.run_id)

    def _cancelled(self, exc: BaseException) -> State:
        self._abandon_tasks("The flow run was cancelled before this task run finished.",
                            cancelled=True)
        # with the signal as its data, it goes on up: a parent flow run stops as well
        return S.Cancelled("The flow run was cancelled.", data=exc)

    def _abandon_tasks(self, message: str, cancelled: bool = False) -> None:
        """Mark every unfinished task run Crashed (Cancelled) now and stop the runner without
        waiting: code still running in a worker thread goes on in the background, its outcome
        discarded."""
        self._crash_live(message, cancelled=cancelled)
        runner, self.ctx.task_runner = self.ctx.task_runner, self._new_runner()
        runner.shutdown(wait=False)

    def finish(self, state: State) -> State:
        flow = self.flow
        ref = state.details.pop("result_ref", None)
        self.ctx.task_runner.shutdown(wait=True)
        decision = self.client.set_flow_run_state(self.run_id, state, result=ref)
        if decision.verdict is Verdict.REJECT:
            # already ended by its parent (which timed out or was interrupted)
            self.logger.warning("Finished in state %s after the run had already ended (%s); "
                                "this outcome is discarded.", _state_repr(state), decision.reason)
            self.client.end_flow_run(self.run_id)
            return state
        engine_log(self.logger, 20 if state.type is StateType.COMPLETED else 40,
                   f"Finished in state {_state_repr(state)}")
        hooks = {StateType.COMPLETED: flow.on_completion, StateType.FAILED: flow.on_failure,
                 StateType.CRASHED: flow.on_crashed,
                 StateType.CANCELLED: flow.on_cancellation}.get(state.type)
        if hooks:
            run_hooks(hooks, (flow, self.info, state), self.logger, "state", self.ctx)
        if self.parent_task_run_id is not None:
            p = self.parent
            assert p is not None
            mirror = State(state.type, state.name, state.message, data=state.data)
            p.client.set_task_run_state(self.parent_task_run_id, mirror)
            p.live_task_runs.pop(self.parent_task_run_id, None)
        self.client.end_flow_run(self.run_id)
        return state

    # -- what the attempt loop (engine/drivers.py) needs -----------------------------------------
    @property
    def fn(self) -> Any:
        return self.flow.fn

    @property
    def timeout(self) -> float | None:
        return self.flow.timeout_seconds

    def enter(self) -> Any:
        return flow_run_ctx.set(self.ctx), task_run_ctx.set(None)

    def exit(self, tokens: Any) -> None:
        task_run_ctx.reset(tokens[1])
        flow_run_ctx.reset(tokens[0])

    def next_attempt(self) -> State | None:
        self._start_attempt()
        return None

    def crashed(self, exc: BaseException) -> State:
        return self._crashed(exc)

    def complete(self, state: State) -> State:
        return self.finish(state)

    def run_sync(self) -> State:
        try:
            return drive_sync(self)
        finally:
            heartbeats.remove(self.run_id)

    async def run_async(self) -> State:
        try:
            return await drive_async(self)
        finally:
            heartbeats.remove(self.run_id)

    def _crashed(self, exc: BaseException) -> State:
        if isinstance(exc, TerminationSignal) and self._being_cancelled():
            return self._cancelled(exc)  # stopped for a cancel between two steps
        try:
            self._abandon_tasks(f"The flow run crashed ({type(exc).__name__}) before this task "
                                "run finished.")
        except Exception:  # noqa: BLE001 - recording the flow run's own end matters more
            pass
        return S.Crashed(f"The flow run crashed: {type(exc).__name__}: {exc}", data=exc)

    def timeout_error(self) -> FlowTimeoutError:
        return FlowTimeoutError(
            f"Flow run {self.info.name!r} exceeded its timeout of "
            f"{self.flow.timeout_seconds:g} second(s) and was stopped."
        )


def outcome(state: State, return_state: bool) -> Any:
    """What a flow call gives back: the state, the value, or the user's exception raised."""
    if return_state:
        exc = state.data
        if isinstance(exc, BaseException) and not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt / SystemExit always propagate, as from a task
        return state
    if state.type is StateType.COMPLETED:
        return state.result()
    exc = state.data
    if isinstance(exc, BaseException):
        raise strip_internal_frames(exc)
    raise LegatoError(state.message or f"The flow run ended in state {state.name}.")


def _raw_params(flow: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = list(flow.binder.names)
    out = {names[i] if i < len(names) else f"arg{i}": a for i, a in enumerate(args)}
    out.update(kwargs)
    return out


def _log_error(engine: Any, message: str) -> None:
    logger = getattr(engine, "logger", None)  # a subflow that failed to begin has none
    if logger is not None:
        logger.error(message)


def _first_exception(futures: list[Any]) -> BaseException | None:
    for f in futures:
        data = f.final_state().data
        if isinstance(data, BaseException):
            return data
    return None


def _state_repr(state: State) -> str:
    return f"{state.name}({'message=' + repr(state.message) if state.message else ''})"
