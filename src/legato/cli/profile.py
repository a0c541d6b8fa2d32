"""`legato profile`: named sets of settings in ``LEGATO_HOME/profiles.toml``, one of them active."""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

import typer

from ..exceptions import ConfigurationError
from ..settings import active_profile_name, load_profiles, save_profiles
from ._common import handles_errors, warn
from .config import display_value

app = typer.Typer(
    help="Create, switch between and inspect settings profiles.", no_args_is_help=True
)

_VALID_NAME = re.compile(r"[\w.-]+")


def _existing(data: dict[str, Any], name: str) -> dict[str, Any]:
    profile = data["profiles"].get(name)
    if profile is None:
        raise ConfigurationError(
            f"Profile {name!r} not found. Existing profiles: {', '.join(sorted(data['profiles']))}."
        )
    return profile


def _check_new(data: dict[str, Any], name: str) -> None:
    if not _VALID_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{name!r} is not a valid profile name; use letters, digits, '_', '-' and '.'."
        )
    if name in data["profiles"]:
        raise ConfigurationError(
            f"Profile {name!r} already exists. Switch to it with `legato profile use {name}`, "
            "or pick another name."
        )


def _env_profile() -> str | None:
    return os.environ.get("LEGATO_PROFILE") or None


@app.command("ls")
@handles_errors
def ls() -> None:
    """List the profiles; the active one is marked with *."""
    data = load_profiles()
    active = active_profile_name(data)
    for name in sorted(data["profiles"]):
        typer.echo(f"* {name}" if name == active else f"  {name}")


@app.command()
@handles_errors
def create(
    name: Annotated[str, typer.Argument(help="Name of the new profile.")],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Copy the settings of this profile.", metavar="OTHER"),
    ] = None,
) -> None:
    """Create a profile, empty or as a copy of another."""
    data = load_profiles()
    _check_new(data, name)
    settings = dict(_existing(data, from_)) if from_ is not None else {}
    data["profiles"][name] = settings
    save_profiles(data)
    source = f" from {from_!r}" if from_ is not None else ""
    typer.echo(f"Created profile {name!r}{source}.")
    typer.echo(f"Switch to it with: legato profile use {name}")


@app.command()
@handles_errors
def use(name: Annotated[str, typer.Argument(help="The profile to make active.")]) -> None:
    """Make a profile the active one."""
    data = load_profiles()
    _existing(data, name)
    data["active"] = name
    save_profiles(data)
    typer.echo(f"Now using profile {name!r}.")
    env = _env_profile()
    if env is not None and env != name:
        warn(f"LEGATO_PROFILE={env!r} is set in the environment and overrides this choice.")


@app.command()
@handles_errors
def delete(name: Annotated[str, typer.Argument(help="The profile to delete.")]) -> None:
    """Delete a profile (not the active one)."""
    data = load_profiles()
    _existing(data, name)
    if name in (data["active"], _env_profile()):
        raise ConfigurationError(
            f"Profile {name!r} is the active profile and cannot be deleted. "
            "Switch to another one first with `legato profile use NAME`."
        )
    if name == "default":
        raise ConfigurationError(
            "The 'default' profile cannot be deleted; remove its settings with "
            "`legato config unset VAR` instead."
        )
    del data["profiles"][name]
    save_profiles(data)
    typer.echo(f"Deleted profile {name!r}.")


@app.command()
@handles_errors
def inspect(
    name: Annotated[
        str | None, typer.Argument(help="The profile to show; the active one if left out.")
    ] = None,
) -> None:
    """Show the settings a profile holds (secrets masked)."""
    data = load_profiles()
    name = name or active_profile_name(data)
    profile = _existing(data, name)
    if not profile:
        typer.echo(f"Profile {name!r} is empty.")
    for var, value in profile.items():
        typer.echo(f"{var}={display_value(var, value)}")


@app.command()
@handles_errors
def rename(
    old: Annotated[str, typer.Argument(help="The profile's current name.")],
    new: Annotated[str, typer.Argument(help="Its new name.")],
) -> None:
    """Rename a profile (the active one stays active under its new name)."""
    data = load_profiles()
    _existing(data, old)
    _check_new(data, new)
    # rebuild the table so the profile keeps its place in the file
    data["profiles"] = {(new if k == old else k): v for k, v in data["profiles"].items()}
    if data["active"] == old:
        data["active"] = new
    save_profiles(data)
    typer.echo(f"Renamed profile {old!r} to {new!r}.")
    if _env_profile() == old:
        warn(f"LEGATO_PROFILE={old!r} is set in the environment; set it to {new!r}.")
