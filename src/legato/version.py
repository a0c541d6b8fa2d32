"""Legato's version, as installed."""

from __future__ import annotations


def legato_version() -> str:
    # importlib.metadata costs ~40 ms to import: lazy, for CLI start-up time
    from importlib import metadata

    try:
        return metadata.version("legato")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"
