"""Cleaning values a database refuses (NUL characters, lone surrogates, NaN in JSON).

Used only after a flush failed on such a value: the hot path pays nothing for it.
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa

_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _clean_str(s: str) -> str:
    if "\x00" in s:  # PostgreSQL text cannot hold NUL
        s = s.replace("\x00", "\ufffd")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: show the bytes they stand for
        try:
            s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


def _clean_json(v: Any) -> Any:
    """``v`` with unstorable values replaced; the very same object when nothing changed."""
    if isinstance(v, str):
        return _clean_str(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else _NONFINITE[repr(v)]
    if isinstance(v, dict):
        items = [
            (_clean_str(k) if isinstance(k, str) else k, _clean_json(x)) for k, x in v.items()
        ]
        if all(ck is k and cx is x for (ck, cx), (k, x) in zip(items, v.items(), strict=True)):
            return v
        return dict(items)
    if isinstance(v, (list, tuple)):
        out = [_clean_json(x) for x in v]
        return v if all(a is b for a, b in zip(out, v, strict=True)) else out
    return v


def _clean_row(row: dict[str, Any]) -> bool:
    changed = False
    for k, v in row.items():
        if isinstance(v, (str, dict, list, tuple)):
            new = _clean_json(v)
            if new is not v:
                row[k] = new
                changed = True
    return changed


def is_data_error(exc: BaseException) -> bool:
    """Did the flush fail on a value (not on the connection, a lock, a constraint)?"""
    if isinstance(exc, (UnicodeError, ValueError)):
        return True
    return isinstance(exc.__context__, sa.exc.DataError)




def clean_rows(rows: list[dict[str, Any]]) -> bool:
    """Clean every row in place; True if anything changed."""
    changed = False
    for row in rows:
        if _clean_row(row):
            changed = True
    return changed
