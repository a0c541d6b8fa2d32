"""A database upgraded by a newer Legato: an older Legato says so plainly and touches nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from legato.exceptions import ConfigurationError
from legato.store.database import HEAD_REVISION, dispose_all, get_database


def test_a_schema_from_a_newer_legato_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    db = get_database(f"sqlite:///{path}")
    db.ensure_ready()
    dispose_all()
    with sqlite3.connect(path) as con:
        con.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
        tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]

    with pytest.raises(ConfigurationError) as caught:
        get_database(f"sqlite:///{path}").ensure_ready()
    message = str(caught.value)
    assert "0099_from_the_future" in message and HEAD_REVISION in message
    assert "newer Legato" in message and "Upgrade Legato" in message
    dispose_all()
    with sqlite3.connect(path) as con:  # nothing was changed
        assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == \
            "0099_from_the_future"
        assert con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == tables
