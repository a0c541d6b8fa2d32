from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel

from legato.exceptions import SerializationError
from legato.results import (
    JSONSerializer,
    ParquetSerializer,
    PickleSerializer,
    Serializer,
    choose_serializer,
    load_result,
    persist_result,
    resolve_serializer,
)


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def make_adder(n: int) -> Any:
    return lambda x: x + n


def roundtrip(value: Any, serializer: str | None = None, **kw: Any) -> Any:
    ref = persist_result(value, serializer=serializer, **kw)
    return load_result(ref)


def test_cloudpickle_roundtrips_closures_and_custom_classes() -> None:
    adder = roundtrip(make_adder(3), "cloudpickle")
    assert adder(4) == 7
    assert roundtrip(lambda s: s.upper(), "pickle")("a") == "A"
    assert roundtrip(Point(1, 2)) == Point(1, 2)


def test_json_roundtrips_nested_structures_with_extras() -> None:
    value = {
        "when": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc),
        "day": dt.date(2024, 5, 1),
        "naive": dt.datetime(2024, 5, 1, 8, 0, 0, 123456),
        "delta": dt.timedelta(days=1, seconds=5, microseconds=7),
        "items": [1, 2.5, None, True, "x", {"deep": [dt.time(9, 15)]}],
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "price": Decimal("10.10"),
        "path": Path("/tmp/x.csv"),
        "pair": (1, "a"),
        "tags": {"b", "a"},
        "by_int": {1: "one", (2, 3): "tuple key"},
        "blob": b"\x00\xff",
        "__legato_type__": "not a tag",
    }
    ref = persist_result(value, serializer="json")
    assert ref["serializer"] == "json"
    raw = (Path(ref["storage"]) / ref["storage_key"]).read_text()
    assert "2024-05-01T12:30:00+00:00" in raw  # human-readable on disk
    assert load_result(ref) == value


def test_json_returns_pydantic_models_as_dicts() -> None:
    class Config(BaseModel):
        name: str
        when: dt.date

    assert roundtrip([Config(name="a", when=dt.date(2024, 1, 2))], "json") == [
        {"name": "a", "when": "2024-01-02"}
    ]


def test_json_refuses_unsupported_values_naming_the_type() -> None:
    with pytest.raises(SerializationError, match="Point.*'json'"):
        persist_result(Point(1, 2), serializer="json")


def test_parquet_roundtrips_dataframe_with_datetimes_and_index() -> None:
    df = pd.DataFrame(
        {
            "ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:30", None]),
            "tz": pd.date_range("2024-01-01", periods=3, freq="h", tz="Europe/Paris"),
            "n": [1, 2, 3],
            "x": [0.5, None, 2.0],
            "s": ["a", "b", None],
            "c": pd.Categorical(["u", "v", "u"]),
        },
        index=pd.Index([10, 20, 30], name="row"),
    )
    ref = persist_result(df)
    assert ref["serializer"] == "parquet"
    pd.testing.assert_frame_equal(load_result(ref), df)


def test_parquet_keeps_a_string_multiindex() -> None:
    df = pd.DataFrame(
        {"v": [1.0, 2.0]},
        index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "i"]),
    )
    pd.testing.assert_frame_equal(roundtrip(df, "parquet"), df)


def test_choose_serializer() -> None:
    assert isinstance(choose_serializer(pd.DataFrame({"a": [1]}), None), ParquetSerializer)
    assert isinstance(choose_serializer({"a": 1}, None), PickleSerializer)
    assert isinstance(choose_serializer(pd.DataFrame({"a": [1]}), "json"), JSONSerializer)
    custom = JSONSerializer()
    assert choose_serializer(1, custom) is custom


def test_dataframe_parquet_cannot_hold_falls_back_to_cloudpickle() -> None:
    df = pd.DataFrame({"mixed": [1, "a", Point(1, 2)]})
    ref = persist_result(df)
    assert ref["serializer"] == "cloudpickle"
    assert load_result(ref)["mixed"].tolist() == [1, "a", Point(1, 2)]


def test_choose_serializer_does_not_import_pandas() -> None:
    code = (
        "import sys; from legato.results import choose_serializer; "
        "print(choose_serializer({'a': 1}, None).name); "
        "print([m for m in ('pandas', 'pyarrow', 'cloudpickle') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == ["cloudpickle", "[]"]


def test_resolve_serializer() -> None:
    assert resolve_serializer(None) is None
    assert resolve_serializer("pickle").name == "cloudpickle"  # type: ignore[union-attr]
    assert resolve_serializer("JSON").name == "json"  # type: ignore[union-attr]
    with pytest.raises(SerializationError, match=r"'yaml'.*'cloudpickle'.*'json'.*'parquet'"):
        resolve_serializer("yaml")


def test_custom_serializer_is_used_and_recorded() -> None:
    class Upper(Serializer):
        name = "upper"

        def dumps(self, obj: Any) -> bytes:
            return obj.upper().encode()

        def loads(self, data: bytes) -> Any:
            return data.decode()

    ref = persist_result("abc", serializer=Upper())
    assert ref["serializer"] == "upper"
    assert (Path(ref["storage"]) / ref["storage_key"]).read_bytes() == b"ABC"


@pytest.mark.parametrize(
    "value, type_name",
    [(threading.Lock(), "lock"), ((i for i in range(3)), "generator")],
)
def test_unpicklable_value_raises_with_type_and_fix(value: Any, type_name: str) -> None:
    with pytest.raises(SerializationError) as info:
        persist_result(value)
    msg = str(info.value)
    assert type_name in msg
    assert "'cloudpickle'" in msg
    assert "persist_result=False" in msg and "result_serializer='json'" in msg


def test_default_storage_is_under_legato_home(legato_home: Path) -> None:
    ref = persist_result([1, 2])
    assert Path(ref["storage"]) == legato_home / "storage"
    assert (legato_home / "storage" / ref["storage_key"]).is_file()
    assert len(ref["storage_key"]) == 32


def test_local_storage_path_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_LOCAL_STORAGE_PATH", str(tmp_path / "results"))
    ref = persist_result("v", key="fixed")
    assert (tmp_path / "results" / "fixed").is_file()
    assert load_result(ref) == "v"


def test_explicit_folder_key_with_subfolder_and_no_tmp_left(tmp_path: Path) -> None:
    ref = persist_result({"a": 1}, storage=str(tmp_path), key="run-1/task-a")
    assert load_result(ref) == {"a": 1}
    assert sorted(p.name for p in (tmp_path / "run-1").iterdir()) == ["task-a"]
    # overwriting the same key replaces the value
    load = load_result(persist_result({"a": 2}, storage=tmp_path, key="run-1/task-a"))
    assert load == {"a": 2}


def test_key_may_not_escape_storage(tmp_path: Path) -> None:
    with pytest.raises(SerializationError, match="relative path"):
        persist_result(1, storage=tmp_path, key="../outside")


def test_reference_is_json_and_loads_in_another_process(tmp_path: Path) -> None:
    import json

    ref = persist_result({"n": 42}, storage=tmp_path)
    code = (
        "import json, sys; from legato.results import load_result; "
        "print(load_result(json.loads(sys.argv[1]))['n'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(ref)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "42"


def test_missing_result_file_raises(tmp_path: Path) -> None:
    ref = persist_result(1, storage=tmp_path)
    (tmp_path / ref["storage_key"]).unlink()
    with pytest.raises(SerializationError, match="is missing; was LEGATO_HOME/storage cleaned"):
        load_result(ref)


def test_unwritable_folder_names_folder_and_setting(tmp_path: Path) -> None:
    # A folder below a regular file cannot be created, even by root (unlike chmod 0o500).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    folder = blocker / "storage"
    with pytest.raises(SerializationError) as info:
        persist_result(1, storage=folder)
    assert str(folder) in str(info.value)
    assert "LEGATO_LOCAL_STORAGE_PATH" in str(info.value)
    assert "result_storage" in str(info.value)


def test_not_a_reference() -> None:
    with pytest.raises(SerializationError, match="not a persisted-result reference"):
        load_result({"foo": 1})


class MemoryFS:
    """A filesystem block stand-in without a local basepath."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def write_path(self, path: str, content: bytes) -> None:
        self.files[path] = content

    def read_path(self, path: str) -> bytes:
        return self.files[path]


class LocalFS(MemoryFS):
    def __init__(self, basepath: Path) -> None:
        super().__init__()
        self.basepath = basepath

    def write_path(self, path: str, content: bytes) -> None:
        target = Path(self.basepath) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def test_block_storage_in_process() -> None:
    fs = MemoryFS()
    ref = persist_result({"a": 1}, storage=fs, key="k")
    assert list(fs.files) == ["k"]
    assert ref["storage_path_of_block"] is None
    assert load_result(ref) == {"a": 1}


def test_block_with_local_basepath_loads_without_the_block(tmp_path: Path) -> None:
    ref = persist_result([1, 2, 3], storage=LocalFS(tmp_path), key="k")
    ref.pop("storage_block_token")  # as if read back by another process
    assert ref["storage_path_of_block"] == str(tmp_path)
    assert load_result(ref) == [1, 2, 3]


def test_block_without_basepath_cannot_load_in_another_process() -> None:
    ref = persist_result(1, storage=MemoryFS(), key="k")
    ref.pop("storage_block_token")
    with pytest.raises(SerializationError, match="another process"):
        load_result(ref)
