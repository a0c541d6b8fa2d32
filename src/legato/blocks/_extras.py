"""Optional extras: the cloud SDKs a block needs are imported when it is used, never before.

``require("google.cloud.storage", "gcp", "GcsBucket")`` imports and returns the module, or raises
:class:`~legato.exceptions.MissingExtraError` saying which extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..exceptions import MissingExtraError


def require(module: str, extra: str, user: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{user} needs the package {module.split('.')[0]!r}, which is not installed "
            f"({exc}). Install the extra: pip install 'legato[{extra}]'") from None
