"""`legato block ...`: register types from a module or a file, list, inspect (masked), delete;
on the embedded history and through a server; and the encryption key's handling."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from legato.blocks.system import Secret, String
from legato.cli import app
from legato.client.factory import close_clients
from legato.exceptions import ConfigurationError
from legato.settings import reset_settings_cache
from legato.store.encryption import reset_ciphers

BLOCKS_FILE = '''
from pydantic import SecretStr
from legato.blocks.core import Block


class Warehouse(Block):
    """Where the reports go."""

    _block_type_name = "Report Warehouse"
    dsn: SecretStr
    schema_name: str = "public"
'''


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def test_register_list_inspect_delete(history_or_server: str, tmp_path: Path) -> None:
    out = ok("block", "register", "-m", "legato.blocks.system")
    assert "Registered 4 block type(s)" in out and "secret" in out
    path = tmp_path / "my_blocks.py"
    path.write_text(BLOCKS_FILE)
    assert "report-warehouse" in ok("block", "register", "--file", str(path))
    types = json.loads(ok("block", "type", "ls", "--json"))
    assert {"report-warehouse", "secret", "string", "json", "date-time"} <= {
        t["slug"] for t in types}
    shown = ok("block", "type", "inspect", "report-warehouse")
    assert "dsn (secret)" in shown and "Where the reports go." in shown

    Secret(value="cli-secret-value-9").save("db-pass")
    String(value="hello").save("greeting")
    listed = json.loads(ok("block", "ls", "--json"))
    assert {(b["block_type_slug"], b["name"]) for b in listed} == {
        ("secret", "db-pass"), ("string", "greeting")}
    table = ok("block", "ls")
    assert "secret/db-pass" in table and "string/greeting" in table
    assert json.loads(ok("block", "ls", "--type", "string", "--json"))[0]["name"] == "greeting"
    inspected = ok("block", "inspect", "secret/db-pass")
    assert "********" in inspected and "cli-secret-value-9" not in inspected
    doc = json.loads(ok("block", "inspect", "string/greeting", "--json"))
    assert doc["data"] == {"value": "hello"}
    assert json.loads(ok("block", "inspect", doc["id"], "--json"))["name"] == "greeting"

    assert "Deleted block secret/db-pass" in ok("block", "delete", "secret/db-pass")
    ok("block", "delete", doc["id"])
    assert json.loads(ok("block", "ls", "--json")) == []


def test_cli_errors_are_one_clear_line(history_or_server: str, tmp_path: Path) -> None:
    String(value="x").save("kept")
    r = run("block", "inspect", "string/missing")
    assert r.exit_code == 1 and "No string block named 'missing'" in r.output
    assert "'kept'" in r.output
    r = run("block", "inspect", "not-an-address")
    assert r.exit_code == 1 and "TYPE/NAME" in r.output
    r = run("block", "delete", "nope/x")
    assert r.exit_code == 1 and "nope" in r.output
    r = run("block", "register", "-m", "no_such_module_here")
    assert r.exit_code == 1 and "Cannot import module 'no_such_module_here'" in r.output
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom in the file')\n")
    r = run("block", "register", "--file", str(broken))
    assert r.exit_code == 1 and "boom in the file" in r.output
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    r = run("block", "register", "--file", str(empty))
    assert r.exit_code == 1 and "defines no Block subclasses" in r.output
    r = run("block", "type", "delete", "string")
    assert r.exit_code == 1 and "still has saved blocks" in r.output
    assert "Traceback" not in r.output


def test_key_file_is_private_and_another_key_is_reported(legato_home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    Secret(value="v").save("s")
    key_file = legato_home / "encryption.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert Secret.load("s").get() == "v"

    other = ok("block", "generate-key").strip()
    assert other != key_file.read_text().strip()
    monkeypatch.setenv("LEGATO_ENCRYPTION_KEY", other)
    close_clients()
    reset_settings_cache()
    reset_ciphers()
    with pytest.raises(ConfigurationError, match="saved with another key.*LEGATO_ENCRYPTION_KEY"):
        Secret.load("s")
    # saved with the configured key, readable with it
    Secret(value="w").save("t")
    assert Secret.load("t").get() == "w"
    monkeypatch.setenv("LEGATO_ENCRYPTION_KEY", "not a key")
    reset_settings_cache()
    with pytest.raises(ConfigurationError, match="not a valid key.*generate-key"):
        Secret.load("t")
