"""Pieces both engines share: retry delays, timeouts, hooks, names, binding."""

from __future__ import annotations

import contextvars
import inspect
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..context import FlowRunContext, flow_run_ctx, task_run_ctx
from ..exceptions import ParameterBindError
from ..ids import generate_run_name  # noqa: F401 - the engines' import path
from ..states import StateType


def render_run_name(template: Any, parameters: dict[str, Any], what: str) -> str:
    """A run name from a template string (str.format over the parameters) or a callable."""
    if template is None:
        raise ValueError("no template")
    if callable(template):
        name = template()
    else:
        try:
            name = str(template).format(**parameters)
        except (KeyError, IndexError) as exc:
            raise ParameterBindError(
                f"The {what} name template {template!r} uses {exc} which is not one of the "
                f"parameters ({', '.join(parameters) or 'none'})."
            ) from None
    if not isinstance(name, str):
        raise TypeError(f"The {what} name callable returned {type(name).__name__}, not a str.")
    return name


def flow_run_cancelled(client: Any, run_id: str) -> bool:
    """Whether the flow run ``run_id`` was asked to cancel (Cancelling or Cancelled in the
    store): what a TerminationSignal means then is a cancel, not a crash."""
    try:
        return client.read_flow_run(run_id).state_type in (StateType.CANCELLING,
                                                           StateType.CANCELLED)
    except Exception:  # noqa: BLE001 - cannot tell: treat it as the crash it looks like
        return False


def retry_delay(spec: Any, retries: int, attempt: int, jitter: float | None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based)."""
    if spec is None:
        delay = 0.0
    else:
        if callable(spec):
            spec = spec(retries)
        if isinstance(spec, (int, float)):
            delay = float(spec)
        else:
            seq: Sequence[float] = list(spec)
            delay = float(seq[min(attempt, len(seq)) - 1]) if seq else 0.0
    if jitter and delay > 0:
        delay *= random.uniform(max(0.0, 1.0 - jitter), 1.0 + jitter)
    return max(0.0, delay)


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """retry_delay_seconds=exponential_backoff(10) waits 10, 20, 40, ... seconds."""

    def delays(retries: int) -> list[float]:
        return [backoff_factor * 2**i for i in range(retries)]

    return delays


class Binder:
    """Binds call arguments to a function's parameters, fast for the common positional case."""

    __slots__ = ("signature", "names", "fast", "var_positional")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        self.names = tuple(p.name for p in params)
        self.fast = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        self.var_positional = next(
            (p.name for p in params if p.kind is p.VAR_POSITIONAL), None
        )

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> dict[str, Any]:
        if self.fast and not kwargs and len(args) == len(self.names):
            return dict(zip(self.names, args, strict=False))
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterBindError(
                f"{what} could not take these arguments: {exc}. Its parameters are "
                f"({', '.join(self.names) or 'none'})."
            ) from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def call_args(self, params: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.fast:
            return tuple(params[n] for n in self.names), {}
        ba = inspect.BoundArguments(self.signature, params)  # type: ignore[arg-type]
        return ba.args, ba.kwargs


def _async_raise(thread_id: int, exc_type: type[BaseException]) -> None:
    import ctypes  # lazy: only needed when a timeout fires

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


def _with_default_message(exc: BaseException) -> type[BaseException]:
    """An asynchronous exception is raised from its class, without arguments: a subclass whose
    default message is ``exc``'s, so the code it stops (a subflow, a log) says why."""
    cls = type(exc)
    args = exc.args

    def __init__(self: BaseException, *a: Any) -> None:
        cls.__init__(self, *(a or args))

    return type(cls.__name__, (cls,), {"__init__": __init__, "__module__": cls.__module__,
                                        "__qualname__": cls.__qualname__})


def call_with_timeout(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float,
    exc: BaseException,
) -> Any:
    """Run sync ``fn`` in a helper thread; at the deadline raise ``exc`` here and move on.

    The helper thread is then interrupted with an asynchronous exception, which stops pure-Python
    code at its next bytecode. Code blocked inside a C call (``time.sleep``, a socket read, a
    long numpy operation) cannot be interrupted in Python: it keeps running in the background
    until that call returns, and its outcome is discarded (the run is already TimedOut).
    """
    box: dict[str, Any] = {}
    done = threading.Event()
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            try:
                box["value"] = ctx.run(fn, *args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                box["error"] = e
            finally:
                done.set()
        except BaseException:  # noqa: BLE001 - the interruption came just after fn returned
            pass

    t = threading.Thread(target=target, name="legato-timeout", daemon=True)
    t.start()
    if not done.wait(timeout):
        if t.ident is not None:
            _async_raise(t.ident, _with_default_message(exc))
        raise exc
    if "error" in box:
        raise box["error"]
    return box.get("value")


async def await_with_timeout(coro: Any, timeout: float, exc: BaseException) -> Any:
    """Await ``coro``; at the deadline cancel it and raise ``exc``.

    Unlike ``asyncio.wait_for``, a ``TimeoutError`` raised by the user's own code (an HTTP or
    database timeout) stays that error and is not mistaken for the run's timeout.
    """
    import asyncio

    fut = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait((fut,), timeout=timeout)
    except BaseException:  # we were cancelled ourselves: take the work down with us
        fut.cancel()
        raise
    if done:
        return fut.result()
    fut.cancel()
    await asyncio.wait((fut,))
    if not fut.cancelled():
        fut.exception()  # retrieved, so asyncio does not warn; the run timed out regardless
    raise exc


def run_hooks(hooks: Sequence[Callable[..., Any]], args: tuple[Any, ...], logger: Any, kind: str,
              context: Any = None) -> None:
    """Call state hooks; a hook that raises is logged, never changes the run's state.

    ``context`` (a flow or task run context) is the run context while they run, so a hook can
    call get_run_logger()."""
    if context is not None:
        var = flow_run_ctx if isinstance(context, FlowRunContext) else task_run_ctx
        token = var.set(context)
        try:
            run_hooks(hooks, args, logger, kind)
        finally:
            var.reset(token)
        return
    for hook in hooks or ():
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                _run_awaitable(result)
        except Exception as exc:  # noqa: BLE001 - reported in the run log
            logger.error(
                "The %s hook %r raised %s: %s (the run's state is unchanged)",
                kind, getattr(hook, "__name__", hook), type(exc).__name__, exc,
            )


def _run_awaitable(aw: Any) -> Any:
    """Run an async hook to completion from sync code, even under a running event loop (an
    async flow's): then on a helper thread with a loop of its own."""
    import asyncio

    async def main() -> Any:
        return await aw

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    box: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box["value"] = ctx.run(asyncio.run, main())
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["error"] = e

    t = threading.Thread(target=target, name="legato-hook")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
