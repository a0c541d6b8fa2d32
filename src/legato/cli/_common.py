"""What every command group shares: turning Legato's errors into one red line, and output.

Commands print for people through Rich and for scripts through ``print_json`` (plain JSON on
stdout and nothing else). Errors go to stderr.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from ..exceptions import LegatoError

F = TypeVar("F", bound=Callable[..., Any])


def console() -> Console:
    """A console on stdout. Made per call so it writes to whatever sys.stdout is now (tests
    swap it). Markup is off: names and messages from the history may contain brackets."""
    return Console(markup=False, highlight=False)


def err_console() -> Console:
    return Console(stderr=True, markup=False, highlight=False)


def exit_with_error(message: str) -> NoReturn:
    """Print ``Error: message`` in red on one line on stderr and exit with code 1."""
    one_line = " ".join(str(message).split())
    # soft_wrap: Rich would otherwise break a long message at the terminal width
    err_console().print(Text(f"Error: {one_line}", style="red"), soft_wrap=True)
    raise typer.Exit(1)


def warn(message: str) -> None:
    err_console().print(Text(f"Warning: {message}", style="yellow"), soft_wrap=True)


def handles_errors(fn: F) -> F:
    """Decorate a command so a LegatoError ends it with a red one-line message, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LegatoError as exc:
            exit_with_error(str(exc))

    return wrapper  # type: ignore[return-value]


def print_json(payload: Any) -> None:
    """Write ``payload`` as JSON on stdout, without Rich (no colours, no wrapping)."""
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
