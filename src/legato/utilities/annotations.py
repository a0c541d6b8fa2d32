"""Markers users wrap arguments in: ``unmapped``, ``allow_failure``, ``quote``."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Annotation(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        return self.value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class unmapped(_Annotation[T]):
    """Pass this argument whole to every mapped call instead of iterating over it."""

    def __getitem__(self, _: Any) -> T:
        return self.value


class allow_failure(_Annotation[T]):
    """Run the downstream task even if this upstream future failed (it receives the exception)."""


class quote(_Annotation[T]):
    """Pass this value as it is: do not look inside it for futures (saves time on big inputs)."""
