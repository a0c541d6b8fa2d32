"""System blocks: a secret, a string, a JSON value and a date-time, saved by name.

``Secret.load("db-password").get()`` gives the secret; listings show it as ``********``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field, SecretStr, field_validator

from .core import Block
from .fields import SecretDict


class Secret(Block):
    """A secret string (or object), encrypted at rest and masked in every listing."""

    _block_type_name = "Secret"
    _code_example = 'from legato.blocks.system import Secret\nSecret.load("BLOCK_NAME").get()'

    value: SecretStr | SecretDict = Field(description="The secret: a string, or an object.")

    @field_validator("value", mode="before")
    @classmethod
    def _wrap(cls, value: Any) -> Any:
        if isinstance(value, str):
            return SecretStr(value)
        if isinstance(value, dict):
            return SecretDict(value)
        return value

    def get(self) -> Any:
        """The secret value itself."""
        return self.value.get_secret_value()


class String(Block):
    """A string value."""

    _block_type_name = "String"
    _code_example = 'from legato.blocks.system import String\nString.load("BLOCK_NAME").value'

    value: str = Field(description="A string value.")


class JSON(Block):
    """Any JSON value: an object, a list, a number, a string."""

    _block_type_name = "JSON"
    _code_example = 'from legato.blocks.system import JSON\nJSON.load("BLOCK_NAME").value'

    value: Any = Field(description="A JSON-compatible value.")


class DateTime(Block):
    """A date and time (ISO 8601)."""

    _block_type_name = "Date Time"
    _code_example = 'from legato.blocks.system import DateTime\nDateTime.load("BLOCK_NAME").value'

    value: dt.datetime = Field(description="An ISO 8601 date and time.")
