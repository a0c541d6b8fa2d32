"""Legato's version, as installed."""

from __future__ import annotations

#: the HTTP API's version: both sides send it in this header (a light module: the client needs
#: it without loading the API's pydantic models)
API_VERSION = "0.4.0"
API_VERSION_HEADER = "X-Legato-API-Version"


def legato_version() -> str:
    # importlib.metadata costs ~40 ms to import: lazy, for CLI start-up time
    from importlib import metadata

    try:
        return metadata.version("legato")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"
