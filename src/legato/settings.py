"""Legato's settings: one model, read from ``LEGATO_*`` variables and the active profile.

Precedence, highest first: an environment variable, the active profile in
``LEGATO_HOME/profiles.toml``, the default declared here. ``LEGATO_HOME`` itself and
``LEGATO_PROFILE`` (which profile is active) come only from the environment, because the profile
file lives under the home.

The settings are re-read cheaply whenever the environment or the profile file changes, so a test
or a script that sets ``os.environ["LEGATO_HOME"]`` between flow runs gets what it set.

This module uses a plain pydantic model rather than pydantic-settings: the latter costs about
175 ms of import time here, more than our whole ``import legato`` budget.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Literal

from .exceptions import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PREFIX = "LEGATO_"

def _home_from_env() -> Path:
    raw = os.environ.get("LEGATO_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".legato"


def _model():
    # pydantic is imported on first use, not on `import legato` (import-time budget).
    from pydantic import BaseModel, ConfigDict, Field, field_validator

    class Settings(BaseModel):
        """Every Legato setting. The environment variable is ``LEGATO_`` + the upper-cased name."""

        model_config = ConfigDict(frozen=True, extra="forbid")

        home: Path = Field(description="Where the history, results and profiles live.")
        profile: str = Field("default", description="The active profile's name.")
        database_url: str | None = Field(
            None,
            description="SQLAlchemy URL of the run history. Default: SQLite at LEGATO_HOME/legato.db. "
            "PostgreSQL: postgresql+psycopg://user@host/db (postgresql+asyncpg:// is accepted too).",
        )
        database_busy_timeout: float = Field(
            30.0, description="Seconds to wait for another process's lock on a SQLite history."
        )
        api_url: str | None = Field(None, description="URL of a Legato server's API.")
        api_key: str | None = Field(None, description="API key sent to the Legato server.")
        api_request_timeout: float = Field(
            30.0, description="Seconds the HTTP client waits for one answer from the server."
        )
        api_request_retries: int = Field(
            6,
            description="How often the HTTP client retries a call the server did not answer "
            "(connection refused, timeout, 502/503/504), with exponential backoff, while the "
            "server has not answered this process yet (a wrong URL fails fast).",
        )
        api_outage_window_seconds: float = Field(
            600.0,
            description="How long a process that has reached the server waits out its outage "
            "(a restart, a network cut): calls are retried with backoff and the run's states, "
            "task runs and logs are kept; past the window, what is unsent goes to a spool file "
            "under LEGATO_HOME/spool, delivered by the next Legato process or agent.",
        )
        server_api_host: str = Field("127.0.0.1", description="Address `legato server start` binds.")
        server_api_port: int = Field(4200, description="Port `legato server start` listens on.")
        server_api_keys: str | None = Field(
            None,
            description="Comma-separated API keys the server accepts (Authorization: Bearer KEY). "
            "Unset (and no keys file): the API is open and the server binds to localhost only.",
        )
        server_api_keys_file: Path | None = Field(
            None,
            description="A file of accepted API keys, one SHA-256 hex digest per line "
            "(`legato server hash-key KEY` prints one).",
        )
        server_max_body_bytes: int = Field(
            16_000_000, description="Largest request body the server accepts (bytes)."
        )
        server_services_enabled: bool = Field(
            True, description="Run the background services (retention, ...) in the server process."
        )
        concurrency_slot_wait_seconds: float = Field(
            0.5,
            description="How long a task run waits before asking again for a slot of a full tag "
            "concurrency limit.",
        )
        retention_flow_runs_days: float | None = Field(
            None,
            description="Delete finished flow runs (with their task runs, states and logs) older "
            "than this many days. Unset: keep forever.",
        )
        retention_task_runs_days: float | None = Field(
            None, description="Delete finished task runs (and their states) older than this many days."
        )
        retention_logs_days: float | None = Field(
            None, description="Delete log lines older than this many days."
        )
        flow_run_heartbeat_seconds: float = Field(
            10.0,
            description="How often a running flow run (a script's or a deployment's) records "
            "that it is alive; a run silent for two intervals is marked Crashed.",
        )
        worker_cancel_grace_seconds: float = Field(
            20.0, description="When a running flow run is cancelled, its worker (agent, "
            "`legato worker start`, `serve`) asks its process to stop (SIGTERM) and forces it "
            "(SIGKILL) after this many seconds. The default keeps the whole cancel under 30 s.",
        )
        late_runs_grace_seconds: float = Field(
            15.0, description="A scheduled run not started this long after its time is "
            "marked Late.",
        )
        scheduler_horizon_seconds: float = Field(
            7 * 86400.0, description="How far ahead the scheduler creates runs.",
        )
        notifications_interval_seconds: float = Field(
            2.0, description="How often the server's notification service looks for flow-run "
            "state changes to announce and sends the due notifications.",
        )
        ui_url: str | None = Field(
            None, description="The web UI's address, for the links in notifications "
            "({ui_url}/runs/{id}). Unset: http://SERVER_API_HOST:SERVER_API_PORT.",
        )
        encryption_key: str | None = Field(
            None,
            description="The key that encrypts saved blocks at rest (a Fernet key: "
            "`legato block generate-key`). Unset: the key file under LEGATO_HOME, made on first "
            "use. Every server and client writing one database must share it.",
        )
        encryption_key_file: Path | None = Field(
            None, description="A file holding the block encryption key (default "
            "LEGATO_HOME/encryption.key).",
        )
        logging_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
            "INFO", description="Lowest level of run log lines stored and shown."
        )
        logging_to_console: bool = Field(True, description="Show run log lines on the console.")
        logging_log_prints: bool = Field(
            False, description="Default for log_prints on flows and tasks."
        )
        debug_mode: bool = Field(
            False,
            description="Show Legato's own frames in run tracebacks (hidden by default).",
        )
        history_write_mode: Literal["batched", "durable"] = Field(
            "batched",
            description="batched: history rows are written in batches and all flushed before a "
            "flow call returns. durable: each task's state and result are committed before the "
            "next task starts.",
        )
        history_flush_interval: float = Field(
            0.5, description="Seconds between background flushes in batched mode."
        )
        results_persist_by_default: bool = Field(
            False, description="Persist every task and flow result unless told otherwise."
        )
        local_storage_path: Path | None = Field(
            None, description="Where persisted results go. Default: LEGATO_HOME/storage."
        )
        task_runner_max_workers: int | None = Field(
            None, description="Threads of the default thread-pool task runner."
        )
        task_default_retries: int = Field(0, description="Default retries of a task.")
        flow_default_retries: int = Field(0, description="Default retries of a flow.")

        @field_validator("database_url")
        @classmethod
        def _url(cls, v: str | None) -> str | None:
            if v is not None and "://" not in v:
                raise ValueError(
                    "the value is not a database URL (no '://'). Use e.g. sqlite:////path/legato.db or "
                    "postgresql+psycopg://user@127.0.0.1:5432/dbname"
                )
            return v

        @property
        def storage_path(self) -> Path:
            return self.local_storage_path or self.home / "storage"

        @property
        def resolved_database_url(self) -> str:
            return self.database_url or f"sqlite:///{self.home / 'legato.db'}"

    return Settings


_lock = threading.Lock()
_model_cls: Any = None
_cache: tuple[Any, Any] | None = None


def settings_model() -> Any:
    global _model_cls
    if _model_cls is None:
        _model_cls = _model()
    return _model_cls


def setting_names() -> list[str]:
    """All setting names, as environment variables (LEGATO_HOME, ...)."""
    return [PREFIX + n.upper() for n in settings_model().model_fields]


def profiles_path(home: Path | None = None) -> Path:
    return (home or _home_from_env()) / "profiles.toml"


def load_profiles(home: Path | None = None) -> dict[str, Any]:
    """The profiles file as a dict: {"active": name, "profiles": {name: {VAR: value}}}."""
    path = profiles_path(home)
    try:
        data = tomllib.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        # no profiles yet (a home that cannot exist is reported by the history store, which
        # names the folder and what to set)
        data = {}
    except PermissionError:
        raise ConfigurationError(
            f"Cannot read the profiles file {path} (permission denied). Make it readable or set "
            "LEGATO_HOME to a folder of your own."
        ) from None
    except IsADirectoryError:
        raise ConfigurationError(
            f"{path} is a folder, but Legato keeps its profiles in a file of that name. Move the "
            "folder away or set LEGATO_HOME elsewhere."
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"The profiles file {path} is not valid TOML ({exc}). Fix it by hand or delete it "
            "to start from the default profile."
        ) from None
    data.setdefault("active", "default")
    profiles = data.setdefault("profiles", {})
    profiles.setdefault("default", {})
    return data


def save_profiles(data: dict[str, Any], home: Path | None = None) -> Path:
    import tomli_w

    path = profiles_path(home)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(data))
        tmp.chmod(0o600)  # it may hold an API key
        tmp.replace(path)
    except OSError as exc:
        raise ConfigurationError(f"Cannot write the profiles file {path}: {exc.strerror}.") from None
    return path


def active_profile_name(data: dict[str, Any] | None = None) -> str:
    return os.environ.get("LEGATO_PROFILE") or (data or load_profiles())["active"]


def _key() -> tuple[Any, ...]:
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(PREFIX)))
    try:
        st = profiles_path().stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    return env, stamp


def get_settings() -> Any:
    """The current settings (cached until the environment or the profile file changes)."""
    global _cache
    key = _key()
    cached = _cache
    if cached is not None and cached[0] == key:
        return cached[1]
    with _lock:
        settings = build_settings()
        _cache = (key, settings)
        return settings


def build_settings(overrides: dict[str, Any] | None = None) -> Any:
    home = _home_from_env()
    data = load_profiles(home)
    name = active_profile_name(data)
    profile = data["profiles"].get(name)
    if profile is None:
        raise ConfigurationError(
            f"The active profile {name!r} does not exist in {profiles_path(home)}. "
            "Create it with `legato profile create NAME` or pick one with `legato profile use NAME`."
        )
    values: dict[str, Any] = {}
    for var, value in profile.items():
        field = var[len(PREFIX) :].lower() if var.startswith(PREFIX) else None
        if field not in KINDS or field in ("home", "profile"):
            raise ConfigurationError(
                f"Profile {name!r} in {profiles_path(home)} sets unknown setting {var!r}. "
                f"Remove it with `legato config unset {var}`."
            )
        values[field] = value
    for var, value in os.environ.items():
        if var.startswith(PREFIX):
            field = var[len(PREFIX) :].lower()
            if field in KINDS:
                values[field] = value
    values["home"] = home
    values["profile"] = name
    if overrides:
        values.update(overrides)
    try:
        return LightSettings(values)
    except _NotPlain:
        pass  # let the pydantic model parse it, and word the error if it is one
    from pydantic import ValidationError

    try:
        return settings_model()(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            + ("" if _is_secret(e["loc"]) else f" (got {e.get('input')!r})")
            for e in exc.errors()
        )
        raise ConfigurationError(f"Invalid setting: {problems}.") from None


# -- the runtime's settings without pydantic ------------------------------------------------------
# The first pydantic model a process builds costs ~0.25 s here, a third of a short script's whole
# run. So a script's settings are parsed by the small strict converters below, from this table of
# kinds; anything they do not accept plainly goes to the pydantic model (the one definition of
# what is valid, and of the error messages). A test checks the table against the model and that
# both parse the same inputs to the same values.
KINDS: dict[str, Any] = {
    "home": "path",
    "profile": "str",
    "database_url": "url?",
    "database_busy_timeout": "float",
    "api_url": "str?",
    "api_key": "str?",
    "api_request_timeout": "float",
    "api_request_retries": "int",
    "api_outage_window_seconds": "float",
    "server_api_host": "str",
    "server_api_port": "int",
    "server_api_keys": "str?",
    "server_api_keys_file": "path?",
    "server_max_body_bytes": "int",
    "server_services_enabled": "bool",
    "concurrency_slot_wait_seconds": "float",
    "retention_flow_runs_days": "float?",
    "retention_task_runs_days": "float?",
    "retention_logs_days": "float?",
    "flow_run_heartbeat_seconds": "float",
    "late_runs_grace_seconds": "float",
    "worker_cancel_grace_seconds": "float",
    "scheduler_horizon_seconds": "float",
    "notifications_interval_seconds": "float",
    "ui_url": "str?",
    "encryption_key": "str?",
    "encryption_key_file": "path?",
    "logging_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    "logging_to_console": "bool",
    "logging_log_prints": "bool",
    "debug_mode": "bool",
    "history_write_mode": ("batched", "durable"),
    "history_flush_interval": "float",
    "results_persist_by_default": "bool",
    "local_storage_path": "path?",
    "task_runner_max_workers": "int?",
    "task_default_retries": "int",
    "flow_default_retries": "int",
}
DEFAULTS: dict[str, Any] = {
    "profile": "default", "database_url": None, "database_busy_timeout": 30.0, "api_url": None,
    "api_key": None, "logging_level": "INFO", "logging_to_console": True,
    "logging_log_prints": False, "debug_mode": False, "history_write_mode": "batched",
    "history_flush_interval": 0.5, "results_persist_by_default": False,
    "local_storage_path": None, "task_runner_max_workers": None, "task_default_retries": 0,
    "flow_default_retries": 0, "api_request_timeout": 30.0, "api_request_retries": 6,
    "api_outage_window_seconds": 600.0,
    "server_api_host": "127.0.0.1", "server_api_port": 4200, "server_api_keys": None,
    "server_api_keys_file": None, "server_max_body_bytes": 16_000_000,
    "server_services_enabled": True, "concurrency_slot_wait_seconds": 0.5,
    "retention_flow_runs_days": None, "retention_task_runs_days": None,
    "retention_logs_days": None, "encryption_key": None, "encryption_key_file": None,
    "flow_run_heartbeat_seconds": 10.0, "late_runs_grace_seconds": 15.0,
    "scheduler_horizon_seconds": 7 * 86400.0,
    "notifications_interval_seconds": 2.0, "ui_url": None,
    "worker_cancel_grace_seconds": 20.0,
}
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


class _NotPlain(Exception):
    """A value the light parser leaves to pydantic."""


def _convert(kind: Any, value: Any) -> Any:
    if isinstance(kind, tuple):
        if value in kind:
            return value
        raise _NotPlain
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INT.fullmatch(value):
            return int(value)
    elif kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value):
            return float(value)
    elif kind in ("str", "url"):
        if isinstance(value, str) and (kind == "str" or "://" in value):
            return value
    elif kind == "path":
        if isinstance(value, (str, Path)):
            return Path(value)
    raise _NotPlain


class LightSettings:
    """The settings as plain attributes (same names, values and properties as the model)."""

    __slots__ = tuple(KINDS)

    def __init__(self, values: dict[str, Any]) -> None:
        for name, kind in KINDS.items():
            if name in values:
                setattr(self, name, _convert(kind, values[name]))
            elif name in DEFAULTS:
                setattr(self, name, DEFAULTS[name])
            else:
                raise _NotPlain
        for name in values:
            if name not in KINDS:
                raise _NotPlain

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, name):
            raise AttributeError("settings are read-only; set LEGATO_* variables instead")
        object.__setattr__(self, name, value)

    @property
    def storage_path(self) -> Path:
        return self.local_storage_path or self.home / "storage"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'legato.db'}"

    def model_dump(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in KINDS}

    def __repr__(self) -> str:
        shown = {k: ("********" if v is not None and _is_secret([k]) else v)
                 for k, v in self.model_dump().items()}
        return f"Settings({shown})"


def _is_secret(loc: Any) -> bool:
    name = ".".join(str(p) for p in loc).lower()
    return any(w in name for w in ("key", "secret", "password", "token", "database_url"))


def settings_loaded() -> bool:
    """Whether this process has read its settings yet (decorating a function must not)."""
    return _cache is not None


def reset_settings_cache() -> None:
    global _cache
    _cache = None
