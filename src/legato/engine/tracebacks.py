"""Tracebacks that show the user's frames, not Legato's.

Set LEGATO_DEBUG_MODE=true to see Legato's own frames too (for debugging Legato itself).
"""

from __future__ import annotations

import os
import traceback
import types
from pathlib import Path

from ..settings import get_settings

_PKG_DIR = str(Path(__file__).resolve().parent.parent) + os.sep


def is_internal(filename: str) -> bool:
    return filename.startswith(_PKG_DIR)


def _show_internal() -> bool:
    try:
        return bool(get_settings().debug_mode)
    except Exception:  # noqa: BLE001 - a broken setting must not hide the user's error
        return False


def _filter(te: traceback.TracebackException, seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    frames = [f for f in te.stack if not is_internal(f.filename)]
    te.stack = traceback.StackSummary.from_list(frames)
    for nxt in (te.__cause__, te.__context__):
        if nxt is not None:
            _filter(nxt, seen)
    for sub in getattr(te, "exceptions", None) or ():
        _filter(sub, seen)


def format_exception(exc: BaseException) -> str:
    """The exception with its traceback, Legato's frames left out unless debug mode is on."""
    te = traceback.TracebackException.from_exception(exc)
    if not _show_internal():
        _filter(te, set())
    return "".join(te.format()).rstrip()


def strip_internal_frames(exc: BaseException) -> BaseException:
    """Drop Legato's frames from ``exc.__traceback__`` so a re-raise shows the user's code."""
    if _show_internal():
        return exc
    tb = exc.__traceback__
    frames: list[types.TracebackType] = []
    while tb is not None:
        if not is_internal(tb.tb_frame.f_code.co_filename):
            frames.append(tb)
        tb = tb.tb_next
    new: types.TracebackType | None = None
    for t in reversed(frames):
        new = types.TracebackType(new, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return exc.with_traceback(new)
