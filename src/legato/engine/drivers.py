"""The attempt loop, written once for flows and tasks, in its sync and async flavours.

A run engine (``FlowRunEngine`` or ``TaskRunEngine``) provides the steps; the loop only decides
how the user's function is called and how the engine waits between attempts:

* ``begin()`` -> a final state (do not run: bad parameters, cache hit, upstream failed) or None;
* ``fn``, ``call_args``, ``call_kwargs``, ``timeout``, ``timeout_error()``: what to call;
* ``on_success(value)`` -> final state; ``on_exception(exc)`` -> (final state, 0) or (None, delay)
  to try again; ``next_attempt()`` -> None, or a final state if the history refused the retry;
* ``enter()`` / ``exit(token)``: set and reset the run's context variables around user code;
* ``crashed(exc)``: an error outside user code; returns the state to end with, or raises;
* ``complete(state)``: record the final state and return it (or raise for a crash).
"""

from __future__ import annotations

import time
from typing import Any

from ..states import State
from .common import await_with_timeout, call_with_timeout


def drive_sync(run: Any) -> State:
    state = run.begin()
    fn, timeout = run.fn, run.timeout
    token = run.enter()
    try:
        while state is None:
            try:
                if timeout is None:
                    value = fn(*run.call_args, **run.call_kwargs)
                else:
                    value = call_with_timeout(
                        fn, run.call_args, run.call_kwargs, timeout, run.timeout_error()
                    )
            except BaseException as exc:  # noqa: BLE001 - turned into a state
                state, delay = run.on_exception(exc)
                if state is None:
                    if delay:
                        time.sleep(delay)
                    state = run.next_attempt()
            else:
                state = run.on_success(value)
    except BaseException as exc:  # noqa: BLE001 - outside user code (Ctrl-C in a retry delay)
        state = run.crashed(exc)
    finally:
        run.exit(token)
    return run.complete(state)


async def drive_async(run: Any) -> State:
    import asyncio  # lazy: asyncio costs ~70 ms of `import legato`

    state = run.begin()
    fn, timeout = run.fn, run.timeout
    token = run.enter()
    try:
        while state is None:
            try:
                coro = fn(*run.call_args, **run.call_kwargs)
                if timeout is None:
                    value = await coro
                else:
                    value = await await_with_timeout(coro, timeout, run.timeout_error())
            except BaseException as exc:  # noqa: BLE001 - turned into a state
                state, delay = run.on_exception(exc)
                if state is None:
                    if delay:
                        await asyncio.sleep(delay)
                    state = run.next_attempt()
            else:
                state = run.on_success(value)
    except BaseException as exc:  # noqa: BLE001 - outside user code: the run still ends
        state = run.crashed(exc)
    finally:
        run.exit(token)
    return run.complete(state)
