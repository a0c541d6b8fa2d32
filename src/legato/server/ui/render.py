"""Rendering the UI's pages: the Jinja2 environment, its filters, and log messages (tracebacks
with the user's frames first and Legato's own folded away)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

_HERE = Path(__file__).parent
_LEGATO_DIR = str(_HERE.parent.parent)  # .../legato


def as_utc(value: dt.datetime) -> dt.datetime:
    """A stored time as an aware UTC time (SQLite hands back naive ones)."""
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def when(value: dt.datetime | None) -> Markup:
    """A time, shown in UTC and turned into the browser's local time by legato.js."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    value = as_utc(value)
    iso = value.isoformat()
    return Markup('<time datetime="{}">{}</time>').format(iso, value.strftime("%Y-%m-%d %H:%M:%S UTC"))


def ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if value is None:
        return "—"
    now = now or dt.datetime.now(dt.timezone.utc)
    seconds = (now - as_utc(value)).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if seconds >= size or unit == "s":
            text = f"{int(seconds // size)}{unit}"
            break
    return f"in {text}" if future else f"{text} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


_LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def level_name(level: int) -> str:
    return _LEVELS.get(level, str(level))


_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line \d+')


def _internal(filename: str) -> bool:
    return filename.startswith(_LEGATO_DIR) or "/site-packages/" in filename \
        or filename.startswith("<frozen ")


def log_message(message: str) -> Markup:
    """A log line's text as HTML. In a traceback, each frame of Legato or of an installed
    library (with its source line) is folded into a closed <details>; the user's frames and
    the error itself stay in view."""
    if "Traceback (most recent call last):" not in message:
        return Markup("<pre class=msg>{}</pre>").format(message)
    lines = message.split("\n")
    out: list[str] = []
    folded: list[str] = []

    def flush() -> None:
        if folded:
            n = sum(1 for line in folded if _FRAME.match(line))
            out.append(
                f'<details class=folded><summary>{n} frame{"s" if n != 1 else ""} of Legato '
                f'and libraries</summary>{escape(chr(10).join(folded))}</details>')
            folded.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        m = _FRAME.match(line)
        if m:
            frame = [line]
            # the frame's source line(s), indented deeper than "  File"
            while i + 1 < len(lines) and lines[i + 1].startswith("    "):
                i += 1
                frame.append(lines[i])
            if _internal(m.group("file")):
                folded.extend(frame)
            else:
                flush()
                out.append(f'<span class=user-frame>{escape(chr(10).join(frame))}</span>')
        else:
            flush()
            css = "error-line" if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b",
                                          line) else ""
            out.append(f'<span class="{css}">{escape(line)}</span>' if css else str(escape(line)))
        i += 1
    flush()
    return Markup('<pre class="msg traceback">{}</pre>').format(Markup("\n".join(out)))


def state_badge(state_type: str | None, state_name: str | None = None) -> Markup:
    kind = (state_type or "UNKNOWN").lower()
    name = state_name or (state_type or "Unknown").title()
    return Markup('<span class="state s-{}">{}</span>').format(kind, name)


def build_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    )
    env.filters.update(when=when, ago=ago, duration=duration, pretty_json=pretty_json,
                       level_name=level_name, log_message=log_message)
    env.globals.update(state_badge=state_badge)
    return env
