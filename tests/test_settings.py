"""The runtime parses settings without pydantic (start-up time); the pydantic model stays the one
definition of what is valid. These tests hold the two together."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from legato import settings as st
from legato.exceptions import ConfigurationError


def test_light_parser_knows_exactly_the_models_fields_and_defaults() -> None:
    model = st.settings_model()
    assert set(st.KINDS) == set(model.model_fields)
    for name, field in model.model_fields.items():
        if name == "home":
            continue
        assert st.DEFAULTS[name] == field.default, name


SAMPLES = ["true", "False", "yes", "off", "1", "0", "2", "-3", "3.5", ".5", "1e3", "x", "",
           "INFO", "info", "durable", "batched", "sqlite:///x.db", "nope", "/tmp/p", True, 7, 2.5]


@pytest.mark.parametrize("name", sorted(n for n in st.KINDS if n not in ("home", "profile")))
def test_light_parser_agrees_with_the_model(name: str, tmp_path: Path) -> None:
    model = st.settings_model()
    for raw in SAMPLES:
        values = {"home": tmp_path, "profile": "default", name: raw}
        try:
            light = st.LightSettings(values)
        except st._NotPlain:
            continue  # left to the model: its answer is the answer
        try:
            full = model(**values)
        except ValidationError:
            pytest.fail(f"{name}={raw!r}: the light parser accepted what the model refuses")
        assert getattr(light, name) == getattr(full, name), (name, raw)
        assert type(getattr(light, name)) is type(getattr(full, name)), (name, raw)


def test_a_script_gets_settings_from_env_and_profile(monkeypatch: pytest.MonkeyPatch,
                                                     legato_home: Path) -> None:
    st.save_profiles({"active": "default", "profiles": {"default": {
        "LEGATO_LOGGING_LEVEL": "DEBUG", "LEGATO_TASK_DEFAULT_RETRIES": 2}}}, legato_home)
    monkeypatch.setenv("LEGATO_HISTORY_WRITE_MODE", "durable")
    st.reset_settings_cache()
    s = st.get_settings()
    assert (s.logging_level, s.task_default_retries, s.history_write_mode) == ("DEBUG", 2, "durable")
    assert s.storage_path == legato_home / "storage"
    monkeypatch.setenv("LEGATO_LOGGING_LEVEL", "WARNING")  # the environment wins
    assert st.get_settings().logging_level == "WARNING"


@pytest.mark.parametrize(("var", "value", "words"), [
    ("LEGATO_LOGGING_LEVEL", "loud", "LEGATO_LOGGING_LEVEL"),
    ("LEGATO_DATABASE_BUSY_TIMEOUT", "soon", "LEGATO_DATABASE_BUSY_TIMEOUT"),
    ("LEGATO_DATABASE_URL", "hunter2-secret", "not a database URL"),
])
def test_a_bad_value_names_the_setting_and_hides_secrets(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, words: str
) -> None:
    monkeypatch.setenv(var, value)
    st.reset_settings_cache()
    with pytest.raises(ConfigurationError) as info:
        st.get_settings()
    assert words in str(info.value)
    if "URL" in var:
        assert value not in str(info.value)


def test_settings_are_read_only(legato_home: Path) -> None:
    s = st.get_settings()
    with pytest.raises(AttributeError):
        s.logging_level = "DEBUG"


def test_every_kind_is_one_the_parser_handles() -> None:
    known = {"path", "str", "url", "bool", "int", "float"}
    for name, kind in st.KINDS.items():
        assert isinstance(kind, tuple) or kind.rstrip("?") in known, name
