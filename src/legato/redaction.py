"""The process's log redactor: secret values that must never reach a log line.

When a block is loaded or saved in this process, the values of its secret fields (a ``Secret``
block's value, ``SecretStr``/``SecretDict`` fields such as AWS or GCP credentials, a
notification block's webhook URL) are registered here (``register``). The run-log handler and the
console format (legato/logging.py) pass each line through :func:`redact` before it is stored or
shown: every registered value is replaced by ``********``, in the message and in the exception
text.

Only text is registered (a number or a flag inside a secret object is not), and values shorter
than :data:`MIN_LENGTH` characters are not: masking every ``"abc"`` or
``"1"`` in every log line would hide far more than the secret (and a secret that short is no
secret). With nothing registered, :func:`redact` is a single check of a module variable.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "MIN_LENGTH", "redact", "register", "registered_count"]

MASK = "********"
#: secret values shorter than this are not masked in logs (see the module's docstring)
MIN_LENGTH = 4

_lock = threading.Lock()
_values: set[str] = set()
# every registered value, longest first (a value inside a longer one is masked as the longer);
# empty: nothing to mask. Replaced whole, never changed in place (readers take no lock).
_ordered: tuple[str, ...] = ()


def register(values: Iterable[Any]) -> None:
    """Mask these values in every log line this process writes from now on."""
    global _ordered
    new = set()
    for value in values:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            continue  # a number or a flag inside a secret object: not a secret of its own
        text = value
        for form in (text, text.strip(), json.dumps(text)[1:-1]):
            # json.dumps: the form a multi-line secret (a PEM key) takes in a repr or JSON
            if len(form) >= MIN_LENGTH and form not in _values and form.strip("*"):
                new.add(form)
    if not new:
        return
    with _lock:
        _values.update(new)
        _ordered = tuple(sorted(_values, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every registered secret value replaced by ``********``."""
    # a substring test per value (a fast search in C) beats one regular expression of them
    # all: ~1.2 µs for 20 values on an 80-character line, against ~3 µs for the alternation
    for value in _ordered:
        if value in text:
            text = text.replace(value, MASK)
    return text


def registered_count() -> int:
    return len(_values)


def _forget_all() -> None:
    """Tests only: forget every registered value."""
    global _ordered
    with _lock:
        _values.clear()
        _ordered = ()
