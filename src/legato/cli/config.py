"""`legato config`: view and change the settings of the active profile.

Values are stored as the strings given (as environment variables are) in
``LEGATO_HOME/profiles.toml``, after they have been checked against the settings model: a bad
name or value changes nothing.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from ..exceptions import ConfigurationError
from ..settings import (
    PREFIX,
    active_profile_name,
    load_profiles,
    profiles_path,
    save_profiles,
    setting_names,
    settings_model,
)
from ._common import handles_errors, warn

app = typer.Typer(help="View and change the settings of the active profile.", no_args_is_help=True)

MASK = "********"
#: Settings that only the environment can set: the profiles file lives under LEGATO_HOME, and
#: LEGATO_PROFILE chooses the profile.
ENV_ONLY = {
    "LEGATO_HOME": "the profiles file lives under it; set the LEGATO_HOME environment variable "
    "instead",
    "LEGATO_PROFILE": "switch profiles with `legato profile use NAME` or the LEGATO_PROFILE "
    "environment variable",
}
_SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "TOKEN")
# user:password@ after the scheme; greedy up to the last "@" so a password holding "@" is never
# half shown (over-masking a strange URL is the safe way to be wrong)
_USERINFO = re.compile(r"^([^:/@?#]*):(.*)@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)


def is_secret(name: str) -> bool:
    bare = name.upper().removeprefix(PREFIX)
    return any(word in bare for word in _SECRET_WORDS)


def mask_url(url: str) -> str:
    """The URL with any password replaced by asterisks (also when the scheme is missing)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    rest = _USERINFO.sub(rf"\1:{MASK}@", rest, count=1)
    return _QUERY_PASSWORD.sub(rf"\g<1>{MASK}", scheme + sep + rest)


def display_value(name: str, value: Any) -> str:
    """``value`` as shown to people: secrets masked, ``None`` bare, everything else quoted."""
    if value is None:
        return "None"
    text = str(value)
    if is_secret(name) and text:
        return repr(MASK)
    if name == "LEGATO_DATABASE_URL":
        text = mask_url(text)
    return repr(text)


def active_profile(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The active profile's name and settings, or an error naming the profiles there are."""
    name = active_profile_name(data)
    profile = data["profiles"].get(name)
    if profile is None:
        raise ConfigurationError(
            f"The active profile {name!r} (from LEGATO_PROFILE) does not exist in "
            f"{profiles_path()}. Existing profiles: {', '.join(sorted(data['profiles']))}."
        )
    return name, profile


def _field(var: str) -> str:
    return var.removeprefix(PREFIX).lower()


def _check_name(var: str) -> None:
    if var in ENV_ONLY:
        raise ConfigurationError(f"{var} cannot be set in a profile: {ENV_ONLY[var]}.")
    names = setting_names()
    if var not in names:
        settable = [n for n in names if n not in ENV_ONLY]
        close = difflib.get_close_matches(var, settable, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ConfigurationError(
            f"Unknown setting {var!r}.{hint} Valid settings: {', '.join(settable)}."
        )


def _describe(annotation: Any) -> str:
    """What a field accepts, in words: "one of 'DEBUG', 'INFO'", "an integer", ..."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(_describe(a) for a in parts)
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        Path: "a path",
    }.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _validate(updates: dict[str, str]) -> None:
    """Check the values through the settings model; raise one error naming every bad one."""
    # pydantic is imported here, not at module import: lazy for CLI start-up time
    from pydantic import ValidationError

    model = settings_model()
    try:
        model(home=profiles_path().parent, **{_field(v): value for v, value in updates.items()})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            var = PREFIX + field.upper()
            raw, shown = updates.get(var), display_value(var, updates.get(var))
            if error["type"] == "value_error":  # our own validators say what is expected
                why = error["msg"].removeprefix("Value error, ").rstrip(".")
                if raw:  # they quote the value: never show a password that way
                    why = why.replace(repr(raw), shown).replace(raw, shown.strip("'"))
            else:
                why = "expected " + _describe(model.model_fields[field].annotation)
            problems.append(f"{var}={shown} is not valid: {why}")
        raise ConfigurationError(
            "; ".join(problems) + f". Nothing was changed in {profiles_path()}."
        ) from None


def _parse_assignment(text: str) -> tuple[str, str]:
    var, sep, value = text.partition("=")
    var = var.strip().upper()
    if not sep or not var:
        raise typer.BadParameter(
            f"Expected VAR=VALUE, e.g. LEGATO_API_URL=http://127.0.0.1:4200/api; got {text!r}."
        )
    return var, value


def _warn_if_env_overrides(var: str) -> None:
    if var in os.environ:
        warn(
            f"{var} is also set in the environment, which overrides the profile. "
            f"Run `unset {var}` to use the profile's value."
        )


@app.command("set")
@handles_errors
def set_(
    settings: Annotated[
        list[str],
        typer.Argument(
            help="One or more VAR=VALUE, e.g. LEGATO_LOGGING_LEVEL=DEBUG.", metavar="VAR=VALUE"
        ),
    ],
) -> None:
    """Set settings in the active profile."""
    updates = dict(_parse_assignment(s) for s in settings)
    for var in updates:
        _check_name(var)
    _validate(updates)
    data = load_profiles()
    name, profile = active_profile(data)
    profile.update(updates)
    save_profiles(data)
    for var, value in updates.items():
        typer.echo(f"Set {var!r} to {display_value(var, value)}.")
        _warn_if_env_overrides(var)
    typer.echo(f"Updated profile {name!r}.")


@app.command()
@handles_errors
def unset(
    names: Annotated[list[str], typer.Argument(help="One or more setting names.", metavar="VAR")],
) -> None:
    """Remove settings from the active profile (they fall back to their defaults)."""
    data = load_profiles()
    name, profile = active_profile(data)
    wanted = [n.strip().upper() for n in names]
    for var in wanted:
        # a name the profile holds is always removable, even an unknown one written by hand
        if var not in profile:
            if var not in setting_names():
                _check_name(var)
            raise ConfigurationError(f"{var} is not set in profile {name!r}; nothing was changed.")
    for var in wanted:
        profile.pop(var, None)
    save_profiles(data)
    for var in wanted:
        typer.echo(f"Unset {var!r}.")
        _warn_if_env_overrides(var)
    typer.echo(f"Updated profile {name!r}.")


@app.command()
@handles_errors
def view(
    show_defaults: Annotated[
        bool,
        typer.Option("--show-defaults/--hide-defaults", help="Also show settings left at default."),
    ] = False,
    show_sources: Annotated[
        bool,
        typer.Option(
            "--show-sources/--hide-sources",
            help="Say where each value comes from: env, profile or defaults.",
        ),
    ] = True,
) -> None:
    """Show the active profile and the settings in effect."""
    data = load_profiles()
    name, profile = active_profile(data)
    source = "env" if os.environ.get("LEGATO_PROFILE") else "profile"
    lines = [(f"LEGATO_PROFILE={name!r}", source)]
    fields = settings_model().model_fields
    for var in setting_names():
        if var == "LEGATO_PROFILE":
            continue
        if var in os.environ:
            value, source = os.environ[var], "env"
        elif var in profile:
            value, source = profile[var], "profile"
        elif show_defaults:
            default = (
                profiles_path().parent if var == "LEGATO_HOME" else fields[_field(var)].default
            )
            value, source = default, "defaults"
        else:
            continue
        lines.append((f"{var}={display_value(var, value)}", source))
    for var in profile:
        if var not in setting_names():
            lines.append((f"{var}={display_value(var, profile[var])}", "profile; unknown setting"))
    for text, source in lines:
        typer.echo(f"{text} (from {source})" if show_sources else text)
