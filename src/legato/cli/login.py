"""`legato login --url URL --key KEY`: remember a server and its API key in the active profile."""

from __future__ import annotations

from typing import Annotated

import typer

from ..settings import active_profile_name, load_profiles, reset_settings_cache, save_profiles
from ._common import console, exit_with_error, handles_errors


@handles_errors
def login(
    url: Annotated[str, typer.Option(help="The server's API URL, e.g. http://host:4200/api.")],
    key: Annotated[str, typer.Option(help="An API key the server accepts.", prompt=True,
                                     hide_input=True)],
    check: Annotated[bool, typer.Option(help="Check the key against the server first.")] = True,
) -> None:
    """Store the server URL and API key in the active profile (LEGATO_API_URL, LEGATO_API_KEY)."""
    if "://" not in url:
        exit_with_error(f"--url {url!r} is not a URL; give e.g. http://127.0.0.1:4200/api.")
    if check:
        from ..client.api import SyncApi  # lazy: httpx, for CLI start-up time
        from ..client.transport import Transport

        with SyncApi(Transport(url, key, timeout=10, retries=1)) as api:
            api.version()  # raises AuthenticationError (401) or ServerUnreachableError
    data = load_profiles()
    name = active_profile_name(data)
    profile = data.setdefault("profiles", {}).setdefault(name, {})
    profile["LEGATO_API_URL"] = url
    profile["LEGATO_API_KEY"] = key
    save_profiles(data)
    reset_settings_cache()
    console().print(f"Logged in to {url}; saved in profile {name!r}.")
