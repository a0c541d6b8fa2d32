"""Field types for blocks: :class:`SecretDict`, a dict whose values are secret.

``pydantic.SecretStr`` covers a single secret string. A service-account key or a set of headers
is a dict of secrets: :class:`SecretDict` keeps it out of ``repr``, logs and JSON dumps (each value
shows as ``********``) and gives it back only through :meth:`SecretDict.get_secret_value`.
"""

from __future__ import annotations

from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import core_schema

MASK = "********"


class SecretDict:
    """A dict of secret values; read it with :meth:`get_secret_value`."""

    __slots__ = ("_value",)

    def __init__(self, value: dict[str, Any] | None = None) -> None:
        if isinstance(value, SecretDict):
            value = value.get_secret_value()
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise TypeError(f"a SecretDict holds a dict, not {type(value).__name__}")
        self._value = dict(value)

    def get_secret_value(self) -> dict[str, Any]:
        return self._value

    def masked(self) -> dict[str, str]:
        return {k: MASK for k in self._value}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretDict) and other._value == self._value

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._value)))

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"SecretDict({self.masked()!r})"

    __str__ = __repr__

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        def validate(value: Any) -> SecretDict:
            if isinstance(value, SecretDict):
                return value
            return SecretDict(value)

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.masked(), when_used="always"),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return {"type": "object", "format": "secret-dict", "writeOnly": True}
