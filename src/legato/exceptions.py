"""Legato's exceptions.

Every error Legato raises on purpose derives from :class:`LegatoError`; errors from SQLAlchemy,
the DBAPI drivers and the serializers are translated where they enter, so users see one family::

    LegatoError
    ├── ConfigurationError            a setting, profile or LEGATO_HOME is unusable
    │   └── HomeNotWritableError      LEGATO_HOME cannot be created or written
    ├── StoreError                    the run history database refused an operation
    │   ├── DatabaseLockedError       another process holds the database past the busy timeout
    │   └── DatabaseCorruptError      the file is not a usable database
    ├── ObjectNotFound                an id or name that the history does not hold
    ├── BlockError                    a block could not be saved, loaded or used as asked
    ├── MissingExtraError             an optional extra (legato[gcp], ...) is needed; also ImportError
    ├── ParameterError                flow parameters do not fit the flow's signature
    │   ├── ParameterBindError        unknown / missing arguments
    │   └── ParameterTypeError        a value that cannot be coerced to its type hint
    ├── InvalidStateTransition        the orchestration rules refused a state change
    ├── SerializationError            a result could not be written or read back
    ├── MissingContextError           a run-only API was called outside a flow or task run
    ├── UnfinishedRun                 the result of a run that has not finished was asked for
    ├── MappingError                  .map() got iterables of different lengths, or none
    ├── CancelledRun                  the run was cancelled
    └── TimeoutError (also builtins.TimeoutError)
        ├── TaskTimeoutError
        └── FlowTimeoutError
"""

from __future__ import annotations

import builtins


class LegatoError(Exception):
    """Base class of every error Legato raises on purpose."""


class ConfigurationError(LegatoError):
    pass


class HomeNotWritableError(ConfigurationError):
    pass


class StoreError(LegatoError):
    pass


class DatabaseLockedError(StoreError):
    pass


class DatabaseCorruptError(StoreError):
    pass


class ConflictError(StoreError):
    """The data contradicts what is stored (a duplicate id, a reference to a missing run)."""


class ServerUnreachableError(LegatoError):
    """The Legato server did not answer (after the HTTP client's retries)."""


class ServerError(LegatoError):
    """The Legato server answered with an error."""

    def __init__(self, message: str, status_code: int = 0) -> None:
        super().__init__(message)
        self.status_code = status_code


class AuthenticationError(ServerError):
    """The Legato server wants an API key, or refused the one given."""


class MissingExtraError(LegatoError, ImportError):
    """A block or feature needs an optional extra that is not installed (the message names it)."""


class BlockError(LegatoError):
    """A block could not be saved, loaded or used as asked (the message says why)."""


class ObjectNotFound(LegatoError):
    pass


class ParameterError(LegatoError):
    pass


class ParameterBindError(ParameterError, TypeError):
    pass


class ParameterTypeError(ParameterError, TypeError):
    pass


class InvalidStateTransition(LegatoError):
    pass


class SerializationError(LegatoError):
    pass


class MissingContextError(LegatoError, RuntimeError):
    pass


class UnfinishedRun(LegatoError):
    pass


class MappingError(LegatoError, ValueError):
    pass


class CancelledRun(LegatoError):
    pass


class TerminationSignal(BaseException):
    """The process was told to stop (SIGTERM) while a deployment's flow ran in it: its worker
    stopping it for a cancel, or its platform shutting it down. Like KeyboardInterrupt, not an
    ``Exception``: user code does not catch it by accident."""


class LegatoTimeoutError(LegatoError, builtins.TimeoutError):
    pass


class TaskTimeoutError(LegatoTimeoutError):
    pass


class FlowTimeoutError(LegatoTimeoutError):
    pass
