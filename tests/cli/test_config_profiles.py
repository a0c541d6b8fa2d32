"""`legato config`, `legato profile`, `legato version` and the console script itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli import app
from legato.settings import get_settings, load_profiles, profiles_path

SECRET = "s3cr3t-Value-42"


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def ok(*args: str, env: dict[str, str] | None = None):
    result = run(*args, env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def fails(*args: str, env: dict[str, str] | None = None):
    """The command fails as a user error: exit 1, one red 'Error:' line, no traceback."""
    result = run(*args, env=env)
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# -- the command itself ------------------------------------------------------------------------
def test_console_script_runs():
    script = Path(sys.executable).with_name("legato")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for group in ("config", "profile", "flow-run", "task-run", "version"):
        assert group in proc.stdout


def test_help_imports_neither_the_store_nor_pydantic():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from legato.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'pydantic')"
        " or m.startswith(('legato.store', 'legato.client')))\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_version():
    from importlib.metadata import version

    assert version("legato") in ok("version").stdout
    assert ok("--version").stdout.strip() == version("legato")


# -- config set / unset ------------------------------------------------------------------------
def test_set_writes_the_active_profile_and_settings_read_it():
    result = ok("config", "set", "LEGATO_TASK_DEFAULT_RETRIES=3", "LEGATO_LOGGING_LEVEL=DEBUG")
    assert "Set 'LEGATO_TASK_DEFAULT_RETRIES' to '3'." in result.stdout
    assert "Updated profile 'default'." in result.stdout
    assert load_profiles()["profiles"]["default"] == {
        "LEGATO_TASK_DEFAULT_RETRIES": "3",
        "LEGATO_LOGGING_LEVEL": "DEBUG",
    }
    settings = get_settings()
    assert settings.task_default_retries == 3
    assert settings.logging_level == "DEBUG"


def test_set_goes_to_the_active_profile():
    ok("profile", "create", "dev")
    ok("profile", "use", "dev")
    ok("config", "set", "LEGATO_API_URL=http://127.0.0.1:4200/api")
    profiles = load_profiles()["profiles"]
    assert profiles["dev"] == {"LEGATO_API_URL": "http://127.0.0.1:4200/api"}
    assert profiles["default"] == {}


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("LEGATO_LOGGING_LEVEL=LOUD", "'DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'"),
        ("LEGATO_TASK_DEFAULT_RETRIES=three", "an integer"),
        ("LEGATO_LOGGING_TO_CONSOLE=maybe", "true or false"),
        ("LEGATO_DATABASE_URL=not-a-url", "is not a database URL"),
        ("LEGATO_HISTORY_WRITE_MODE=fast", "'batched', 'durable'"),
    ],
)
def test_a_bad_value_changes_nothing_and_says_what_is_valid(assignment, expected):
    ok("config", "set", "LEGATO_API_URL=http://example.test/api")
    before = profiles_path().read_bytes()
    line = fails("config", "set", "LEGATO_DEBUG_MODE=true", assignment)
    name = assignment.split("=")[0]
    assert name in line and expected in line
    assert "LEGATO_DEBUG_MODE" not in line  # the good one is not blamed
    assert profiles_path().read_bytes() == before


def test_a_bad_value_does_not_create_the_file():
    fails("config", "set", "LEGATO_TASK_DEFAULT_RETRIES=x")
    assert not profiles_path().exists()


def test_an_unknown_name_is_refused_with_a_suggestion():
    ok("config", "set", "LEGATO_DEBUG_MODE=true")
    before = profiles_path().read_bytes()
    line = fails("config", "set", "LEGATO_API_UR=http://x")
    assert "Unknown setting 'LEGATO_API_UR'" in line
    assert "Did you mean LEGATO_API_URL?" in line
    assert "LEGATO_LOGGING_LEVEL" in line  # the valid names are listed
    assert profiles_path().read_bytes() == before


@pytest.mark.parametrize("name", ["LEGATO_HOME", "LEGATO_PROFILE"])
def test_home_and_profile_cannot_be_set_in_a_profile(name):
    line = fails("config", "set", f"{name}=/somewhere")
    assert f"{name} cannot be set in a profile" in line
    assert not profiles_path().exists()


def test_set_without_an_equals_sign_is_a_usage_error():
    result = run("config", "set", "LEGATO_DEBUG_MODE")
    assert result.exit_code == 2
    assert "VAR=VALUE" in result.stderr


def test_set_warns_when_the_environment_overrides_it():
    result = ok("config", "set", "LEGATO_DEBUG_MODE=true", env={"LEGATO_DEBUG_MODE": "false"})
    assert "LEGATO_DEBUG_MODE is also set in the environment" in result.stderr


def test_unset_removes_and_refuses_what_is_not_set():
    ok("config", "set", "LEGATO_DEBUG_MODE=true", "LEGATO_API_URL=http://x/api")
    result = ok("config", "unset", "LEGATO_DEBUG_MODE")
    assert "Unset 'LEGATO_DEBUG_MODE'." in result.stdout
    assert load_profiles()["profiles"]["default"] == {"LEGATO_API_URL": "http://x/api"}
    before = profiles_path().read_bytes()
    line = fails("config", "unset", "LEGATO_API_URL", "LEGATO_DEBUG_MODE")
    assert "LEGATO_DEBUG_MODE is not set in profile 'default'" in line
    assert profiles_path().read_bytes() == before  # all or nothing
    assert "Unknown setting 'LEGATO_NOPE'" in fails("config", "unset", "LEGATO_NOPE")


def test_unset_removes_an_unknown_setting_written_by_hand():
    profiles_path().parent.mkdir(parents=True, exist_ok=True)
    profiles_path().write_text('active = "default"\n[profiles.default]\nLEGATO_OLD_THING = "1"\n')
    ok("config", "unset", "LEGATO_OLD_THING")
    assert load_profiles()["profiles"]["default"] == {}


# -- config view -------------------------------------------------------------------------------
def test_view_shows_the_profile_and_where_values_come_from(legato_home):
    ok("config", "set", "LEGATO_API_URL=http://x/api", "LEGATO_DEBUG_MODE=true")
    out = ok("config", "view", env={"LEGATO_DEBUG_MODE": "false"}).stdout.splitlines()
    assert out[0] == "LEGATO_PROFILE='default' (from profile)"
    assert "LEGATO_API_URL='http://x/api' (from profile)" in out
    assert "LEGATO_DEBUG_MODE='false' (from env)" in out  # the environment wins
    assert f"LEGATO_HOME='{legato_home}' (from env)" in out
    assert not any("LEGATO_FLOW_DEFAULT_RETRIES" in line for line in out)

    out = ok("config", "view", "--show-defaults").stdout.splitlines()
    assert "LEGATO_FLOW_DEFAULT_RETRIES='0' (from defaults)" in out
    assert "LEGATO_LOGGING_LEVEL='INFO' (from defaults)" in out

    out = ok("config", "view", "--hide-sources", "--show-defaults").stdout.splitlines()
    assert "LEGATO_API_URL='http://x/api'" in out
    assert not any("(from" in line for line in out)


def test_view_follows_legato_profile_and_explains_a_missing_one():
    ok("profile", "create", "ci")
    out = ok("config", "view", env={"LEGATO_PROFILE": "ci"}).stdout
    assert out.splitlines()[0] == "LEGATO_PROFILE='ci' (from env)"
    line = fails("config", "view", env={"LEGATO_PROFILE": "nope"})
    assert "'nope'" in line and "Existing profiles: ci, default" in line


def test_secrets_are_masked_everywhere():
    url = f"postgresql+psycopg://legato:{SECRET}@127.0.0.1:5432/legato"
    outputs = [
        ok("config", "set", f"LEGATO_API_KEY={SECRET}", f"LEGATO_DATABASE_URL={url}"),
        ok("config", "view"),
        ok("config", "view", "--show-defaults"),
        ok("profile", "inspect"),
        ok("profile", "inspect", "default"),
        ok("config", "view", env={"LEGATO_API_KEY": SECRET + "-env"}),
    ]
    for result in outputs:
        assert SECRET not in result.output
    view = outputs[1].stdout
    assert "LEGATO_API_KEY='********'" in view
    assert (
        "LEGATO_DATABASE_URL='postgresql+psycopg://legato:********@127.0.0.1:5432/legato'" in view
    )
    # stored as given, of course
    assert load_profiles()["profiles"]["default"]["LEGATO_API_KEY"] == SECRET


def test_a_bad_secret_is_not_echoed_in_the_error():
    # no scheme, so the settings model refuses it, and its message would quote the value
    line = fails("config", "set", f"LEGATO_DATABASE_URL=u:{SECRET}@127.0.0.1/db")
    assert "is not a database URL" in line
    assert SECRET not in line
    assert "u:********@127.0.0.1/db" in line


# -- profiles ----------------------------------------------------------------------------------
def test_profile_lifecycle():
    assert ok("profile", "ls").stdout == "* default\n"
    ok("config", "set", "LEGATO_DEBUG_MODE=true")
    assert (
        "Created profile 'dev' from 'default'."
        in ok("profile", "create", "dev", "--from", "default").stdout
    )
    ok("profile", "create", "empty")
    assert ok("profile", "ls").stdout == "* default\n  dev\n  empty\n"
    assert ok("profile", "inspect", "dev").stdout == "LEGATO_DEBUG_MODE='true'\n"
    assert ok("profile", "inspect", "empty").stdout == "Profile 'empty' is empty.\n"

    assert "Now using profile 'dev'." in ok("profile", "use", "dev").stdout
    assert load_profiles()["active"] == "dev"
    assert ok("profile", "ls").stdout == "  default\n* dev\n  empty\n"
    assert get_settings().profile == "dev"

    ok("profile", "rename", "dev", "prod")
    data = load_profiles()
    assert data["active"] == "prod"
    assert data["profiles"]["prod"] == {"LEGATO_DEBUG_MODE": "true"}
    assert "dev" not in data["profiles"]

    ok("profile", "delete", "empty")
    assert sorted(load_profiles()["profiles"]) == ["default", "prod"]


def test_the_active_profile_cannot_be_deleted():
    ok("profile", "create", "dev")
    ok("profile", "use", "dev")
    before = profiles_path().read_bytes()
    line = fails("profile", "delete", "dev")
    assert "'dev' is the active profile" in line
    assert profiles_path().read_bytes() == before
    # nor the one LEGATO_PROFILE makes active
    ok("profile", "use", "default")
    assert "'dev' is the active profile" in fails(
        "profile", "delete", "dev", env={"LEGATO_PROFILE": "dev"}
    )


@pytest.mark.parametrize(
    "args",
    [
        ("profile", "use", "nope"),
        ("profile", "delete", "nope"),
        ("profile", "inspect", "nope"),
        ("profile", "rename", "nope", "other"),
        ("profile", "create", "new", "--from", "nope"),
    ],
)
def test_unknown_profiles_are_named_with_the_existing_ones(args):
    ok("profile", "create", "dev")
    before = profiles_path().read_bytes()
    line = fails(*args)
    assert "Profile 'nope' not found. Existing profiles: default, dev." in line
    assert profiles_path().read_bytes() == before


def test_create_and_rename_refuse_existing_and_bad_names():
    ok("profile", "create", "dev")
    assert "already exists" in fails("profile", "create", "dev")
    assert "already exists" in fails("profile", "rename", "default", "dev")
    assert "not a valid profile name" in fails("profile", "create", "has space")


def test_a_broken_profiles_file_is_a_clean_error():
    profiles_path().parent.mkdir(parents=True, exist_ok=True)
    profiles_path().write_text("this is = = not toml")
    line = fails("profile", "ls")
    assert "is not valid TOML" in line
