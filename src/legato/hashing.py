"""Stable content hashing, for cache keys.

A cache key must be the same for equal inputs in every process and on every run: a worker
restarted tomorrow must find today's cached result. So nothing here uses ``hash()`` (salted per
process for str and bytes), ``id()``, or the iteration order of sets and dicts. Every value is
written as a type-tagged, length-prefixed byte string, and the digest is taken over that; unordered
containers are written with their members' encodings sorted.

pandas, numpy and pyarrow values are recognised by their class's module name, so hashing a plain
dict never imports those libraries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import threading
import types
import uuid
import warnings
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import PurePath, PureWindowsPath
from typing import Any

__all__ = ["LegatoCacheWarning", "hash_inputs", "stable_hash", "task_input_hash"]

# Deeper than this is almost certainly a linked structure rather than data; giving up early keeps
# us clear of Python's recursion limit (each level costs a few frames).
MAX_DEPTH = 100


class LegatoCacheWarning(UserWarning):
    """A task run could not be cached (an input cannot be hashed)."""


class _Unhashable(Exception):
    """Internal: raised from deep inside the encoder, turned into one warning at the top."""

    def __init__(self, obj: Any, reason: str) -> None:
        super().__init__(reason)
        self.type_name = _type_name(obj)
        self.reason = reason
        # Where in the input it sits, outermost first: an int index, a dict key, or a
        # placeholder such as "<columns>" (a str in angle brackets).
        self.path: list[Any] = []


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _frame(tag: bytes, payload: bytes) -> bytes:
    # Tag + length prefix makes every encoding self-delimiting: ("ab", "c") != ("a", "bc").
    return tag + len(payload).to_bytes(8, "big") + payload


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def _qualname(cls: type) -> bytes:
    return f"{cls.__module__}.{cls.__qualname__}".encode()


def _has_base(obj: Any, module: str, *names: str) -> str | None:
    for cls in type(obj).__mro__:
        if cls.__name__ in names and cls.__module__.partition(".")[0] == module:
            return cls.__name__
    return None


class _Encoder:
    def __init__(self) -> None:
        # ids of the containers being encoded right now, outermost first; only used to spot a
        # container that contains itself, never written into the hash.
        self.stack: list[int] = []

    def encode(self, obj: Any) -> bytes:
        if obj is None:
            return b"N"
        t = type(obj)
        if t is bool:
            return b"b1" if obj else b"b0"
        if t is str:
            return _frame(b"s", obj.encode("utf-8", "surrogatepass"))
        if t is int:
            return _frame(b"i", str(obj).encode())
        if t is float:
            # + 0.0 turns -0.0 into 0.0: they are ==, so they must hash alike.
            return _frame(b"f", float.hex(obj + 0.0).encode())
        mod = t.__module__.partition(".")[0]
        if mod in ("numpy", "pandas", "pyarrow"):
            encoded = getattr(self, f"_{mod}")(obj)
            if encoded is not None:
                return encoded
        if isinstance(obj, (list, tuple, dict, set, frozenset)):
            return self._container(obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return self._container(obj)
        if _has_base(obj, "pydantic", "BaseModel") and hasattr(type(obj), "model_fields"):
            return self._container(obj)
        return self._scalar(obj)

    def _scalar(self, obj: Any) -> bytes:
        if isinstance(obj, enum.Enum):  # before int/str: IntEnum and StrEnum are both
            return _frame(b"E", _frame(b"c", _qualname(type(obj))) + self.encode(obj.name))
        if isinstance(obj, bool):
            return b"b1" if obj else b"b0"
        if isinstance(obj, int):
            return _frame(b"i", str(int(obj)).encode())
        if isinstance(obj, float):
            return _frame(b"f", float.hex(float(obj) + 0.0).encode())
        if isinstance(obj, complex):
            return _frame(b"j", self.encode(obj.real) + self.encode(obj.imag))
        if isinstance(obj, str):
            return _frame(b"s", str(obj).encode("utf-8", "surrogatepass"))
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return _frame(b"y", bytes(obj))
        if isinstance(obj, Decimal):
            return _frame(b"D", _decimal(obj))
        if isinstance(obj, dt.datetime):
            # The UTC offset is part of the key: a task may well print or use it.
            return _frame(b"T", obj.isoformat().encode())
        if isinstance(obj, dt.date):
            return _frame(b"d", obj.isoformat().encode())
        if isinstance(obj, dt.time):
            return _frame(b"t", obj.isoformat().encode())
        if isinstance(obj, dt.timedelta):
            return _frame(b"R", f"{obj.days},{obj.seconds},{obj.microseconds}".encode())
        if isinstance(obj, uuid.UUID):
            return _frame(b"U", obj.bytes)
        if isinstance(obj, PurePath):
            flavour = b"w" if isinstance(obj, PureWindowsPath) else b"p"
            return _frame(b"P", flavour + str(obj).encode("utf-8", "surrogateescape"))
        if isinstance(obj, types.CodeType):
            return self._code(obj)
        return self._pickled(obj)

    def _container(self, obj: Any) -> bytes:
        if len(self.stack) >= MAX_DEPTH:
            raise _Unhashable(obj, f"it is nested more than {MAX_DEPTH} levels deep")
        oid = id(obj)
        if oid in self.stack:
            # A back-reference by depth: deterministic, so equal cyclic structures hash equal.
            return _frame(b"@", str(len(self.stack) - self.stack.index(oid)).encode())
        self.stack.append(oid)
        try:
            return self._container_body(obj)
        finally:
            self.stack.pop()

    def _container_body(self, obj: Any) -> bytes:
        if isinstance(obj, (list, tuple)):
            tag = b"l" if isinstance(obj, list) else b"u"
            return _frame(tag, b"".join(self._child(v, i) for i, v in enumerate(obj)))
        if isinstance(obj, dict):
            return self._mapping(b"m", obj)
        if isinstance(obj, (set, frozenset)):
            # Sorted encodings, not iteration order: set order of str differs between processes.
            members = sorted(self._child(v, "<set member>") for v in obj)
            return _frame(b"S", b"".join(members))
        if dataclasses.is_dataclass(obj):
            # Fields declared compare=False are not part of equality, so not of the key either.
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.compare}
            return _frame(b"C", _frame(b"c", _qualname(type(obj))) + self._mapping(b"m", fields))
        # a pydantic model: its class and its field values (plus extra fields, if allowed)
        values = {name: getattr(obj, name) for name in type(obj).model_fields}
        values.update(getattr(obj, "__pydantic_extra__", None) or {})
        return _frame(b"M", _frame(b"c", _qualname(type(obj))) + self._mapping(b"m", values))

    def _mapping(self, tag: bytes, obj: Mapping[Any, Any]) -> bytes:
        pairs = sorted(
            (self._child(k, "<dict key>"), self._child(v, _Key(k))) for k, v in obj.items()
        )
        return _frame(tag, b"".join(k + v for k, v in pairs))

    def _child(self, value: Any, where: Any) -> bytes:
        try:
            return self.encode(value)
        except _Unhashable as exc:
            exc.path.insert(0, where)
            raise

    def _code(self, code: types.CodeType) -> bytes:
        # Bytecode plus constants and names: co_code alone misses `return x + 1` -> `x + 2`.
        # File names and line numbers are left out so moving a function keeps its cache.
        consts = tuple(
            self._code(c) if isinstance(c, types.CodeType) else c for c in code.co_consts
        )
        return _frame(
            b"K", _frame(b"y", code.co_code) + self.encode(consts) + self.encode(code.co_names)
        )

    def _pickled(self, obj: Any) -> bytes:
        try:
            import cloudpickle  # lazy: only needed for types we do not know

            data = cloudpickle.dumps(obj)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means "cannot hash"
            raise _Unhashable(obj, f"{type(exc).__name__}: {exc}") from None
        return _frame(b"O", _frame(b"c", _qualname(type(obj))) + _digest(data))

    # --- optional libraries: each returns None for a type it does not handle ---------------

    def _numpy(self, obj: Any) -> bytes | None:
        import numpy as np  # already imported: obj is a numpy value

        if isinstance(obj, np.generic):
            obj = np.asarray(obj)
            tag = b"z"
        elif isinstance(obj, np.ndarray):
            tag = b"A"
        else:
            return None
        head = _frame(b"s", str(obj.dtype).encode()) + self.encode(tuple(obj.shape))
        if obj.dtype.hasobject:
            # The raw bytes of an object array are pointers; hash the Python values instead.
            return _frame(tag, head + self._child(obj.tolist(), "<array>"))
        if not obj.dtype.isnative:
            obj = obj.astype(obj.dtype.newbyteorder("="))
        return _frame(tag, head + _digest(np.ascontiguousarray(obj).tobytes()))

    def _pandas(self, obj: Any) -> bytes | None:
        kind = _has_base(obj, "pandas", "DataFrame", "Series", "Index")
        if kind is None:
            return None
        from pandas.util import hash_pandas_object  # already imported: obj is a pandas value

        try:
            rows = hash_pandas_object(obj, index=kind != "Index").to_numpy()
        except TypeError as exc:
            raise _Unhashable(obj, f"pandas cannot hash its values ({exc})") from None
        index = obj if kind == "Index" else obj.index
        parts = [
            _frame(b"y", _digest(rows.tobytes())),
            self.encode(list(index.names)),
            _frame(b"s", repr(index.dtype).encode()),
            self.encode(len(obj)),
        ]
        if kind == "DataFrame":
            parts.append(self._child(list(obj.columns), "<columns>"))
            parts.append(self.encode([repr(d) for d in obj.dtypes]))
        elif kind == "Series":
            parts.append(self._child(obj.name, "<name>"))
            parts.append(_frame(b"s", repr(obj.dtype).encode()))
        return _frame(b"X" + kind[0].encode(), b"".join(parts))

    def _pyarrow(self, obj: Any) -> bytes | None:
        kind = _has_base(obj, "pyarrow", "Table", "RecordBatch", "Array", "ChunkedArray")
        if kind is None:
            return None
        import pyarrow as pa  # already imported: obj is a pyarrow value
        import pyarrow.ipc

        if kind == "Table":
            table = obj
        elif kind == "RecordBatch":
            table = pa.Table.from_batches([obj])
        else:
            table = pa.table({"_": obj})
        # Chunking is a storage detail: combine into one chunk per column so a table built in
        # pieces hashes like the same table built at once. Schema metadata (e.g. pandas') is
        # ignored, as Table.equals ignores it by default.
        table = table.replace_schema_metadata(None)
        if table.num_rows:
            table = table.combine_chunks()
        else:
            table = table.schema.empty_table()
        sink = pa.BufferOutputStream()
        with pyarrow.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        # An Array and a ChunkedArray with the same values hash alike: chunking again.
        tag = b"WA" if kind == "ChunkedArray" else b"W" + kind[0].encode()
        return _frame(tag, _digest(sink.getvalue().to_pybytes()))


def _decimal(d: Decimal) -> bytes:
    # Decimal("1.0") == Decimal("1.00"); strip trailing zeros by hand, since normalize() would
    # round to the context's precision and make distinct long decimals collide.
    sign, digits, exp = d.as_tuple()
    if not isinstance(exp, int):  # NaN / Infinity
        return str(d).encode()
    ds = list(digits)
    while len(ds) > 1 and ds[-1] == 0:
        ds.pop()
        exp += 1
    if ds == [0]:
        sign, exp = 0, 0
    return f"{sign}:{''.join(map(str, ds))}:{exp}".encode()


class _Key:
    """A dict key in an unhashable value's path (told apart from a list index)."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key


def _format_path(path: list[Any]) -> str:
    out = []
    for step in path:
        if isinstance(step, _Key):
            out.append(f"[{step.key!r}]")
        elif isinstance(step, int):
            out.append(f"[{step}]")
        else:
            out.append(f" {step} ")
    return "".join(out).strip()


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(exc: _Unhashable, where: str) -> None:
    with _warned_lock:
        if exc.type_name in _warned:
            return
        _warned.add(exc.type_name)
    warnings.warn(
        f"Legato cannot hash {where} of type {exc.type_name} ({exc.reason}), so the task will "
        "not be cached. Give the task a cache_key_fn that leaves it out, or exclude the "
        "argument with cache_policy=INPUTS - 'name'. (Shown once per type.)",
        LegatoCacheWarning,
        stacklevel=4,
    )


def _hash(objs: tuple[Any, ...], describe: Callable[[list[Any]], str]) -> str | None:
    try:
        encoded = _Encoder().encode(objs)
    except _Unhashable as exc:
        _warn_once(exc, describe(exc.path))
        return None
    except RecursionError:
        exc = _Unhashable(objs, "it is nested too deeply")
        _warn_once(exc, "an input")
        return None
    return hashlib.blake2b(encoded, digest_size=32).hexdigest()


def stable_hash(*objs: Any) -> str | None:
    """A hex digest of ``objs`` that is equal for equal inputs, in any process, on any run.

    Supported: None, bool, int, float, complex, str, bytes, Decimal, datetime/date/time/
    timedelta, UUID, Enum, pathlib paths (the path string, *not* the file's contents: a changed
    file keeps its key), code objects, lists and tuples (ordered), dicts (order-independent),
    sets, dataclasses and pydantic models (class name + field values), pandas DataFrame/Series/
    Index (values, column names, dtypes and index), numpy arrays and scalars (dtype, shape and
    bytes), and pyarrow Table/RecordBatch/Array/ChunkedArray (schema and data, chunking and
    schema metadata ignored; bytes under null slots count, which rarely matters in practice).
    A container that contains itself is encoded with a back-reference.

    Other objects are hashed through cloudpickle, which is stable within one environment for
    plain classes and functions only (e.g. an object holding a set of strings may not be).
    An object cloudpickle cannot handle makes the whole input unhashable: this returns None and
    warns once per type per process with a :class:`LegatoCacheWarning`.
    """
    return _hash(objs, _describe_positional)


def _describe_positional(path: list[Any]) -> str:
    # path[0] is the position in stable_hash's *objs; deeper steps say where inside it.
    return f"the input at {_format_path(path[1:])}" if path[1:] else "an input"


def hash_inputs(inputs: Mapping[str, Any], *salt: Any) -> str | None:
    """:func:`stable_hash` of ``salt`` and a task's arguments, naming the argument that cannot
    be hashed in the warning (what cache policies use)."""

    def describe(path: list[Any]) -> str:
        if len(path) >= 2 and path[0] == 0 and isinstance(path[1], _Key):
            inner = f" (at {_format_path(path[2:])})" if path[2:] else ""
            return f"the argument {path[1].key!r}{inner}"
        return "an input"

    return _hash((dict(inputs), *salt), describe)


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """Prefect's ``cache_key_fn``: the same task with equal arguments gets the same key.

    The key covers the task's ``task_key``, its bytecode (with constants and names, so editing
    a constant invalidates the cache) and the arguments. None when an argument cannot be
    hashed, which means "do not cache this run".
    """
    task = context.task
    code = getattr(task.fn, "__code__", None)
    return hash_inputs(arguments, task.task_key, code)
