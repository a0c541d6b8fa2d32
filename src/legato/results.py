"""Result persistence: turn a task's or flow's return value into bytes in result storage, and back.

A persisted result is described by a small JSON-able *reference* dict that the run history keeps
(in the state rows; a cache hit loads it back), so the value itself never goes through the
database. Serializers are chosen per value: parquet for pandas DataFrames (compact, and readable
by other tools), cloudpickle for everything else, unless the user asks for one.

Importing this module stays cheap: cloudpickle, pandas and pyarrow are imported inside the
functions that need them.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import io
import json
import os
import uuid
from decimal import Decimal
from pathlib import Path, PurePath
from typing import Any, Protocol, runtime_checkable

from .exceptions import SerializationError
from .settings import get_settings

__all__ = [
    "JSONSerializer",
    "ParquetSerializer",
    "PickleSerializer",
    "Serializer",
    "WritableFileSystem",
    "choose_serializer",
    "load_result",
    "persist_result",
    "resolve_serializer",
]

_PERSIST_FIX = (
    "return a picklable value, choose result_serializer='json', or set persist_result=False"
)


class Serializer:
    """Turns a value into bytes and back. Subclass it to plug in a format of your own."""

    name: str = "base"

    def dumps(self, obj: Any) -> bytes:
        raise NotImplementedError

    def loads(self, data: bytes) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PickleSerializer(Serializer):
    """cloudpickle, so lambdas, closures and classes defined in ``__main__`` persist too.

    Loading needs the same libraries (and, for classes pickled by reference, the same modules)
    as the process that wrote the result."""

    name = "cloudpickle"

    def dumps(self, obj: Any) -> bytes:
        import cloudpickle  # lazy: keeps `import legato` fast

        return cloudpickle.dumps(obj)

    def loads(self, data: bytes) -> Any:
        # Plain pickle reads what cloudpickle wrote; cloudpickle itself is not needed to load.
        import pickle

        return pickle.loads(data)


# Values JSON cannot represent natively are written as {_TAG: kind, "v": payload} and rebuilt
# on load. A user dict that happens to hold _TAG is escaped as a "dict" of pairs.
_TAG = "__legato_type__"


class JSONSerializer(Serializer):
    """Human-readable results, for values made of JSON types plus a few common extras.

    What comes back: dict, list, str, int, float, bool and None as themselves; datetime, date,
    time, timedelta, UUID, Decimal, bytes, tuple, set and frozenset as their own types;
    ``pathlib`` paths as :class:`pathlib.Path`; dicts with non-string keys as dicts with those
    keys. Pydantic models come back as plain dicts (their ``model_dump(mode="json")``), since
    rebuilding the model would need its class at load time. Sets are written in sorted order
    when their members sort, so equal sets give equal bytes. Anything else raises
    :class:`SerializationError`.
    """

    name = "json"

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(_to_json(obj), separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data, object_hook=_from_json)


def _to_json(obj: Any) -> Any:
    # A pre-walk rather than json's `default=` hook, because `default` never sees tuples (json
    # writes them as lists) and cannot keep non-string dict keys.
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        if all(type(k) is str for k in obj) and _TAG not in obj:
            return {k: _to_json(v) for k, v in obj.items()}
        return {_TAG: "dict", "v": [[_to_json(k), _to_json(v)] for k, v in obj.items()]}
    if isinstance(obj, list):
        return [_to_json(v) for v in obj]
    if isinstance(obj, tuple):
        return {_TAG: "tuple", "v": [_to_json(v) for v in obj]}
    if isinstance(obj, (set, frozenset)):
        members = [_to_json(v) for v in obj]
        try:
            members = sorted(members)
        except TypeError:
            pass
        return {_TAG: type(obj).__name__, "v": members}
    if isinstance(obj, dt.datetime):
        return {_TAG: "datetime", "v": obj.isoformat()}
    if isinstance(obj, dt.date):
        return {_TAG: "date", "v": obj.isoformat()}
    if isinstance(obj, dt.time):
        return {_TAG: "time", "v": obj.isoformat()}
    if isinstance(obj, dt.timedelta):
        return {_TAG: "timedelta", "v": [obj.days, obj.seconds, obj.microseconds]}
    if isinstance(obj, uuid.UUID):
        return {_TAG: "uuid", "v": str(obj)}
    if isinstance(obj, Decimal):
        return {_TAG: "decimal", "v": str(obj)}
    if isinstance(obj, PurePath):
        return {_TAG: "path", "v": str(obj)}
    if isinstance(obj, (bytes, bytearray)):
        return {_TAG: "bytes", "v": base64.b64encode(bytes(obj)).decode()}
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump) and hasattr(type(obj), "model_fields"):
        return _to_json(model_dump(mode="json"))
    raise TypeError(f"JSON cannot hold a value of type {_type_name(obj)}")


_FROM_JSON: dict[str, Any] = {
    "dict": lambda v: {k: val for k, val in v},
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": uuid.UUID,
    "decimal": Decimal,
    "path": Path,
    "bytes": base64.b64decode,
}


def _from_json(d: dict[str, Any]) -> Any:
    # object_hook runs innermost first, so a tuple used as a dict key or set member is already
    # a tuple (hashable) by the time its container is rebuilt here.
    rebuild = _FROM_JSON.get(d.get(_TAG))  # type: ignore[arg-type]
    if rebuild is None or len(d) != 2 or "v" not in d:
        return d
    return rebuild(d["v"])


class ParquetSerializer(Serializer):
    """pandas DataFrames as parquet, through pyarrow.

    The index (including a named or non-default one) and the dtypes come back as written,
    because pyarrow stores pandas' own metadata in the file."""

    name = "parquet"

    def dumps(self, obj: Any) -> bytes:
        # pandas/pyarrow are imported lazily: they cost hundreds of ms and most flows never
        # persist a DataFrame.
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not _is_dataframe(obj):
            raise TypeError(
                f"the parquet serializer only stores pandas DataFrames, not {_type_name(obj)}"
            )
        table = pa.Table.from_pandas(obj, preserve_index=True)
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()

    def loads(self, data: bytes) -> Any:
        import pyarrow.parquet as pq  # lazy, see dumps

        return pq.read_table(io.BytesIO(data)).to_pandas()


_SERIALIZERS: dict[str, type[Serializer]] = {
    "cloudpickle": PickleSerializer,
    "pickle": PickleSerializer,
    "json": JSONSerializer,
    "parquet": ParquetSerializer,
}


def resolve_serializer(spec: str | Serializer | None) -> Serializer | None:
    """The serializer a user named (``result_serializer="json"``) or passed; None for None."""
    if spec is None or isinstance(spec, Serializer):
        return spec
    if isinstance(spec, str) and spec.strip().lower() in _SERIALIZERS:
        return _SERIALIZERS[spec.strip().lower()]()
    raise SerializationError(
        f"Unknown result serializer {spec!r}. Use one of {', '.join(map(repr, _SERIALIZERS))}, "
        "or an instance of legato.results.Serializer."
    )


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _is_dataframe(value: Any) -> bool:
    # Looks at the class's module instead of isinstance, so pandas is never imported just to
    # find out that a value is not a DataFrame.
    return any(
        c.__name__ == "DataFrame" and c.__module__.startswith("pandas") for c in type(value).__mro__
    )


def choose_serializer(value: Any, requested: str | Serializer | None) -> Serializer:
    """The requested serializer if any; parquet for a DataFrame when pyarrow is installed;
    else cloudpickle."""
    chosen = resolve_serializer(requested)
    if chosen is not None:
        return chosen
    if _is_dataframe(value) and importlib.util.find_spec("pyarrow") is not None:
        return ParquetSerializer()
    return PickleSerializer()


@runtime_checkable
class WritableFileSystem(Protocol):
    """What result storage needs of a filesystem block."""

    def write_path(self, path: str, content: bytes) -> Any: ...

    def read_path(self, path: str) -> bytes: ...


# Storage objects used in this process, so their results can be read back here. A reference to
# a block without a local `basepath` cannot be resolved in another process (see persist_result).
_BLOCKS: dict[str, Any] = {}


def _register_block(block: Any) -> str:
    for token, known in _BLOCKS.items():
        if known is block:
            return token
    token = uuid.uuid4().hex
    _BLOCKS[token] = block
    return token


def _dump(value: Any, serializer: Serializer) -> bytes:
    try:
        return serializer.dumps(value)
    except Exception as exc:  # noqa: BLE001 - any serializer failure is reported the same way
        raise SerializationError(
            f"Cannot persist a result of type {_type_name(value)} with the {serializer.name!r} "
            f"serializer: {exc}. To fix it, {_PERSIST_FIX}."
        ) from exc


def _check_key(key: str) -> None:
    parts = PurePath(key).parts
    if not key or PurePath(key).is_absolute() or ".." in parts:
        raise SerializationError(
            f"Result storage key {key!r} must be a relative path inside result storage "
            "(no leading '/', no '..')."
        )


def _storage_folder(storage: str | os.PathLike[str] | None) -> Path:
    if storage is None:
        return Path(get_settings().storage_path).expanduser().absolute()
    return Path(storage).expanduser().absolute()


def _write_atomic(path: Path, data: bytes, folder: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            # A reader sees the old file or the whole new one, never a half-written result.
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise SerializationError(
            f"Cannot write results to the folder {folder}: {exc.strerror or exc}. "
            "Set LEGATO_LOCAL_STORAGE_PATH to a writable folder, or pass result_storage= "
            "to the flow or task."
        ) from exc


def persist_result(
    value: Any,
    *,
    storage: str | os.PathLike[str] | WritableFileSystem | None = None,
    serializer: str | Serializer | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """Write ``value`` to result storage and return the reference that :func:`load_result` reads.

    ``storage`` is a folder (str or path; default ``LEGATO_LOCAL_STORAGE_PATH``, else
    ``LEGATO_HOME/storage``; created on demand) or a filesystem block with ``write_path`` and
    ``read_path``. A block's results can be read back in another process only when the block
    has a local ``basepath`` (the reference records it as ``storage_path_of_block``); for other
    blocks the reference is resolvable only in the process that wrote it, because the reference
    must stay JSON and cannot carry the block's credentials.

    ``key`` is a relative path under the storage (default: a random hex name). When no
    serializer was requested and a DataFrame cannot be written as parquet (e.g. columns of
    mixed Python objects), cloudpickle is used instead; the reference records which one wrote it.
    """
    ser = choose_serializer(value, serializer)
    if serializer is None and isinstance(ser, ParquetSerializer):
        try:
            data = ser.dumps(value)
        except Exception:  # noqa: BLE001 - parquet was our guess, not the user's request
            ser = PickleSerializer()
            data = _dump(value, ser)
    else:
        data = _dump(value, ser)
    key = key or uuid.uuid4().hex
    _check_key(key)
    ref: dict[str, Any] = {"storage_key": key, "serializer": ser.name}

    if isinstance(storage, WritableFileSystem):
        try:
            storage.write_path(key, data)
        except Exception as exc:  # noqa: BLE001 - translate the block's own errors
            raise SerializationError(
                f"Cannot write the result {key!r} to {storage!r}: {exc}. Check the block's "
                "location and credentials, or pass another result_storage=."
            ) from exc
        ref["storage_block"] = getattr(storage, "_block_document_name", None) or repr(storage)[:200]
        basepath = getattr(storage, "basepath", None)
        ref["storage_path_of_block"] = str(basepath) if basepath is not None else None
        ref["storage_block_token"] = _register_block(storage)
        return ref

    folder = _storage_folder(storage)
    _write_atomic(folder / key, data, folder)
    ref["storage"] = str(folder)
    return ref


def _read(ref: dict[str, Any]) -> bytes:
    key = ref["storage_key"]
    _check_key(key)
    block = _BLOCKS.get(ref.get("storage_block_token") or "")
    if block is not None:
        try:
            return block.read_path(key)
        except Exception as exc:  # noqa: BLE001 - translate the block's own errors
            raise SerializationError(
                f"Cannot read the persisted result {key!r} from {block!r}: {exc}."
            ) from exc
    if "storage" in ref:
        folder = str(ref["storage"])
    elif ref.get("storage_path_of_block") and "://" not in ref["storage_path_of_block"]:
        folder = ref["storage_path_of_block"]
    elif "storage_block" in ref:
        raise SerializationError(
            f"The result {key!r} was written to the storage block {ref['storage_block']} in "
            "another process, and Legato cannot reopen that block here. Load the block and "
            f"call read_path({key!r}) yourself, or use a local result_storage folder."
        )
    else:
        raise SerializationError(f"{ref!r} is not a persisted-result reference (no storage).")
    path = Path(folder) / key
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SerializationError(
            f"The persisted result at {path} is missing; was LEGATO_HOME/storage cleaned (or "
            "the LEGATO_LOCAL_STORAGE_PATH folder)? Re-run the flow or task to compute it again."
        ) from None
    except OSError as exc:
        raise SerializationError(
            f"Cannot read the persisted result at {path}: {exc.strerror or exc}."
        ) from exc


def load_result(ref: dict[str, Any]) -> Any:
    """Read back the value that :func:`persist_result` wrote and described by ``ref``."""
    if not isinstance(ref, dict) or "storage_key" not in ref or "serializer" not in ref:
        raise SerializationError(
            f"{ref!r} is not a persisted-result reference; expected a dict with "
            "'storage_key' and 'serializer' as returned by persist_result()."
        )
    ser = resolve_serializer(ref["serializer"])
    if ser is None:
        raise SerializationError(f"{ref!r} names no serializer; it cannot be loaded.")
    data = _read(ref)
    try:
        return ser.loads(data)
    except Exception as exc:  # noqa: BLE001 - e.g. a pickled class whose module is gone
        raise SerializationError(
            f"Cannot load the persisted result {ref['storage_key']!r} with the {ser.name!r} "
            f"serializer: {type(exc).__name__}: {exc}. A pickled result needs the same "
            "modules and library versions that wrote it."
        ) from exc
