"""Helpers for the end-to-end history tests: child processes and a second connection."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest


def child_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a child Python process using ``home`` (no stray LEGATO_* values)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    env["LEGATO_HOME"] = str(home)
    env["LEGATO_LOGGING_TO_CONSOLE"] = "false"
    env.update({f"LEGATO_{k.upper()}": v for k, v in settings.items()})
    return env


def spawn(code: str, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


def sqlite_rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Plain sqlite3, its own connection: what another program would see."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def kill_on_exit():
    procs: list[subprocess.Popen] = []
    yield procs.append
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture
def helpers() -> Any:
    """The functions above, for test modules (conftest modules are not importable by name)."""
    import types

    return types.SimpleNamespace(child_env=child_env, spawn=spawn, sqlite_rows=sqlite_rows)
