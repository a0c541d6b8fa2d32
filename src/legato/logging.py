"""Run logs: ``get_run_logger()``, the history handler, the console format, and print capture.

Every line logged through a run logger is stored in the history with its flow run id, task run
id, level and timestamp (batched with the run's other rows) and shown on the console in the
format Prefect users know::

    14:02:11.123 | INFO    | Task run 'clean_it-0' - rows: 1369765

The secret values of blocks loaded or saved in this process are masked (``********``) in both,
message and exception text alike (legato/redaction.py).
"""

from __future__ import annotations

import builtins
import datetime as dt
import io
import logging
import sys
import threading
import time
from typing import Any

from .context import FlowRunContext, TaskRunContext, flow_run_ctx, task_run_ctx
from .engine.tracebacks import format_exception
from .exceptions import MissingContextError
from .ids import new_id
from .redaction import redact

__all__ = ["get_run_logger", "get_logger", "RunLogger"]

_UTC = dt.timezone.utc
_setup_lock = threading.Lock()
_configured: tuple[Any, ...] | None = None


class RunLogger(logging.LoggerAdapter):
    """A logger bound to one flow or task run."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**self.extra, **(kwargs.get("extra") or {})}
        return msg, kwargs


class _HistoryHandler(logging.Handler):
    """Sends run log records to the history through the run's client."""

    def emit(self, record: logging.LogRecord) -> None:
        client = getattr(record, "legato_client", None)
        if client is None:
            return
        try:
            msg = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None and not getattr(
                record, "legato_tb_in_message", False
            ):
                msg = f"{msg}\n{format_exception(record.exc_info[1])}"
            msg = redact(msg)  # the secrets of blocks this process loaded: ********
            client.write_log(
                {
                    "id": new_id(),
                    "flow_run_id": getattr(record, "flow_run_id", None),
                    "task_run_id": getattr(record, "task_run_id", None),
                    "name": record.name,
                    "level": record.levelno,
                    "message": msg,
                    "timestamp": dt.datetime.fromtimestamp(record.created, _UTC),
                }
            )
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = dt.datetime.fromtimestamp(record.created)
        who = getattr(record, "legato_who", None)
        msg = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None and not getattr(
            record, "legato_tb_in_message", False
        ):
            msg = f"{msg}\n{format_exception(record.exc_info[1])}"
        msg = redact(msg)
        prefix = f"{t:%H:%M:%S}.{t.microsecond // 1000:03d} | {record.levelname:<7} | "
        return f"{prefix}{who} - {msg}" if who else f"{prefix}{record.name} - {msg}"


class _ConsoleHandler(logging.StreamHandler):
    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(_ConsoleFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # follow redirections (pytest capture, contextlib)
        super().emit(record)


_history_handler = _HistoryHandler()
_console_handler = _ConsoleHandler()


def setup_logging(settings: Any) -> None:
    """Configure the ``legato`` loggers from the settings (cheap when nothing changed)."""
    global _configured
    key = (settings.logging_level, settings.logging_to_console)
    if _configured == key:
        return
    with _setup_lock:
        root = logging.getLogger("legato")
        root.setLevel(settings.logging_level)
        root.propagate = False
        if _history_handler not in root.handlers:
            root.addHandler(_history_handler)
        if settings.logging_to_console:
            if _console_handler not in root.handlers:
                root.addHandler(_console_handler)
        elif _console_handler in root.handlers:
            root.removeHandler(_console_handler)
        _configured = key


_root = logging.getLogger("legato")
_flow_logger = logging.getLogger("legato.flow_runs")
_task_logger = logging.getLogger("legato.task_runs")


def flow_run_logger(ctx: FlowRunContext) -> RunLogger:
    if ctx.logger is None:
        ctx.logger = RunLogger(
            _flow_logger,
            {
                "legato_client": ctx.client,
                "flow_run_id": ctx.flow_run.id,
                "task_run_id": None,
                "legato_who": f"Flow run {ctx.flow_run.name!r}",
            },
        )
    return ctx.logger


def task_run_logger(ctx: TaskRunContext) -> RunLogger:
    if ctx.logger is None:
        ctx.logger = RunLogger(
            _task_logger,
            {
                "legato_client": ctx.client,
                "flow_run_id": ctx.task_run.flow_run_id,
                "task_run_id": ctx.task_run.id,
                "legato_who": f"Task run {ctx.task_run.name!r}",
            },
        )
    return ctx.logger


def engine_log(logger: RunLogger, level: int, msg: str) -> None:
    """A lifecycle line from the engine ("Finished in state Completed()"), without the cost of a
    LogRecord: stored in the history and shown on the console exactly like a logged line."""
    base = logger.logger
    if not base.isEnabledFor(level):
        return
    extra = logger.extra
    now = dt.datetime.now(_UTC)
    msg = redact(msg)  # a state's message may quote an exception that quotes a secret
    extra["legato_client"].write_log(
        {
            "id": new_id(),
            "flow_run_id": extra["flow_run_id"],
            "task_run_id": extra["task_run_id"],
            "name": base.name,
            "level": level,
            "message": msg,
            "timestamp": now,
        }
    )
    if _console_handler in _root.handlers and level >= _console_handler.level:
        line = (
            f"{_local_clock(now)} | {_LEVEL_NAMES.get(level) or logging.getLevelName(level):<7} | "
            f"{extra['legato_who']} - {msg}\n"
        )
        with _console_handler.lock:  # type: ignore[union-attr]
            sys.stderr.write(line)


_LEVEL_NAMES = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}
_clock_cache: list[Any] = [None, ""]


def _local_clock(now: dt.datetime) -> str:
    """HH:MM:SS.mmm in local time; the seconds part is formatted once a second (converting every
    line's time zone cost more than the rest of a task run's console line)."""
    ts = now.timestamp()
    sec = int(ts)
    cache = _clock_cache
    if cache[0] != sec:
        cache[1] = time.strftime("%H:%M:%S", time.localtime(sec))
        cache[0] = sec
    return f"{cache[1]}.{int((ts - sec) * 1000):03d}"


def get_run_logger() -> RunLogger:
    """The logger of the current task run, or else of the current flow run."""
    tctx = task_run_ctx.get()
    if tctx is not None and tctx.client is not None:
        return task_run_logger(tctx)
    fctx = flow_run_ctx.get()
    if fctx is not None:
        return flow_run_logger(fctx)
    raise MissingContextError(
        "get_run_logger() was called outside a flow or task run, so there is no run to log to. "
        "Call it inside a @flow or @task function, or use legato.get_logger(name) elsewhere."
    )


def get_logger(name: str = "legato") -> logging.Logger:
    """A plain logger under ``legato`` (not tied to a run)."""
    return logging.getLogger(name if name.startswith("legato") else f"legato.{name}")


# -- print capture ------------------------------------------------------------------------------
_original_print = builtins.print
_print_patched = False


def _legato_print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None,
                  flush: bool = False) -> None:
    ctx: Any = task_run_ctx.get() or flow_run_ctx.get()
    if ctx is not None and ctx.log_prints and (file is None or file is sys.stdout):
        buf = io.StringIO()
        _original_print(*args, sep=sep, end="", file=buf)
        logger = task_run_logger(ctx) if isinstance(ctx, TaskRunContext) and ctx.client else (
            flow_run_logger(ctx.flow_run_context if isinstance(ctx, TaskRunContext) else ctx)
        )
        logger.info(buf.getvalue())
        return
    _original_print(*args, sep=sep, end=end, file=file, flush=flush)


def patch_print() -> None:
    """Route print() inside runs with log_prints=True to the run's log (installed once)."""
    global _print_patched
    if not _print_patched:
        builtins.print = _legato_print
        _print_patched = True
