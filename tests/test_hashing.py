from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import os
import subprocess
import sys
import threading
import uuid
import warnings
from decimal import Decimal
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import BaseModel

from legato.hashing import LegatoCacheWarning, hash_inputs, stable_hash, task_input_hash


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass
class Cfg:
    name: str
    sizes: list[int]


class Model(BaseModel):
    name: str
    n: int


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": [1, 2, 3],
            "b": ["x", "y", None],
            "t": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
        },
        index=pd.Index(["r1", "r2", "r3"], name="row"),
    )


def complex_input() -> dict[str, Any]:
    return {
        "df": frame(),
        "arr": np.arange(6, dtype="float32").reshape(2, 3),
        "names": {"b", "a", "c"},
        "when": dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc),
        "id": uuid.UUID(int=7),
        "price": Decimal("1.50"),
        "color": Color.RED,
        "path": Path("/data/in.csv"),
        "nested": [(1, 2.5), {"k": b"bytes"}, None, True],
        "cfg": Cfg("c", [1, 2]),
        "model": Model(name="m", n=1),
    }


def test_equal_inputs_hash_equal_and_one_change_differs() -> None:
    assert stable_hash(complex_input()) == stable_hash(complex_input())
    changed = complex_input()
    changed["nested"][0] = (1, 2.6)
    assert stable_hash(changed) != stable_hash(complex_input())


def test_dict_and_set_order_do_not_matter() -> None:
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"x", "y", "z"}) == stable_hash({"z", "x", "y"})
    assert stable_hash([1, 2]) != stable_hash([2, 1])  # lists are ordered


@pytest.mark.parametrize(
    "a, b",
    [
        (1, True),
        (1, 1.0),
        (1, "1"),
        ([1], (1,)),
        ("ab", b"ab"),
        (("ab", "c"), ("a", "bc")),
        (Color.RED, 1),
        (Path("a"), "a"),
        (None, "None"),
        (dt.date(2024, 1, 1), "2024-01-01"),
        (Cfg("c", [1]), {"name": "c", "sizes": [1]}),
    ],
)
def test_values_of_different_types_hash_differently(a: Any, b: Any) -> None:
    assert stable_hash(a) != stable_hash(b)


def test_equal_values_across_representations() -> None:
    assert stable_hash(0.0) == stable_hash(-0.0)
    assert stable_hash(Decimal("1.0")) == stable_hash(Decimal("1.00"))
    assert stable_hash(Decimal("1.01")) != stable_hash(Decimal("1.1"))
    assert stable_hash(frozenset({1, 2})) == stable_hash({2, 1})
    assert stable_hash(Path("a/b")) == stable_hash(PurePosixPath("a/b"))


def test_paths_hash_the_name_not_the_contents(tmp_path: Path) -> None:
    f = tmp_path / "in.csv"
    f.write_text("1")
    before = stable_hash(f)
    f.write_text("2")
    assert stable_hash(f) == before


def test_dataclasses_and_models_hash_by_fields() -> None:
    assert stable_hash(Cfg("c", [1])) == stable_hash(Cfg("c", [1]))
    assert stable_hash(Cfg("c", [1])) != stable_hash(Cfg("c", [2]))
    assert stable_hash(Model(name="m", n=1)) == stable_hash(Model(name="m", n=1))
    assert stable_hash(Model(name="m", n=1)) != stable_hash(Model(name="m", n=2))


def test_dataframes_built_separately_hash_equal() -> None:
    built_other_way = pd.DataFrame(
        [[1, "x", "2024-01-01"], [2, "y", "2024-01-02"], [3, None, "2024-01-03"]],
        columns=["a", "b", "t"],
        index=pd.Index(["r1", "r2", "r3"], name="row"),
    ).astype({"t": frame()["t"].dtype, "b": frame()["b"].dtype})
    pd.testing.assert_frame_equal(built_other_way, frame())
    assert stable_hash(built_other_way) == stable_hash(frame())


def test_dataframe_differences_change_the_hash() -> None:
    base = stable_hash(frame())
    one_value = frame()
    one_value.loc["r2", "a"] = 20
    renamed = frame().rename(columns={"a": "A"})
    retyped = frame().astype({"a": "float64"})
    reindexed = frame().set_axis(["r1", "r2", "rX"])
    index_renamed = frame().rename_axis("other")
    for changed in (one_value, renamed, retyped, reindexed, index_renamed):
        assert stable_hash(changed) != base


def test_series_and_index() -> None:
    s = pd.Series([1.0, 2.0], name="v")
    assert stable_hash(s) == stable_hash(pd.Series([1.0, 2.0], name="v"))
    assert stable_hash(s) != stable_hash(s.rename("w"))
    assert stable_hash(pd.Index([1, 2])) != stable_hash(pd.Index([1, 3]))
    assert stable_hash(s) != stable_hash(s.to_frame())


def test_numpy_arrays_and_scalars() -> None:
    a = np.arange(6).reshape(2, 3)
    assert stable_hash(a) == stable_hash(np.array([[0, 1, 2], [3, 4, 5]]))
    assert stable_hash(a.T) == stable_hash(np.ascontiguousarray(a.T))  # layout is not content
    assert stable_hash(a) != stable_hash(a.reshape(3, 2))
    assert stable_hash(a) != stable_hash(a.astype("int32"))
    b = a.copy()
    b[1, 1] = 40
    assert stable_hash(a) != stable_hash(b)
    assert stable_hash(np.float64(1.5)) == stable_hash(np.float64(1.5))
    assert stable_hash(np.float64(1.5)) != stable_hash(np.float32(1.5))
    objects = np.array([{"k": 1}, "s"], dtype=object)
    assert stable_hash(objects) == stable_hash(np.array([{"k": 1}, "s"], dtype=object))


def test_arrow_tables_hash_by_content_not_chunking() -> None:
    one = pa.table({"a": [1, 2, 3], "s": ["x", "y", "z"]})
    chunked = pa.concat_tables(
        [pa.table({"a": [1], "s": ["x"]}), pa.table({"a": [2, 3], "s": ["y", "z"]})]
    )
    assert chunked.column("a").num_chunks == 2
    assert stable_hash(one) == stable_hash(chunked)
    assert stable_hash(one) != stable_hash(pa.table({"a": [1, 2, 4], "s": ["x", "y", "z"]}))
    assert stable_hash(one) != stable_hash(one.rename_columns(["b", "s"]))
    assert stable_hash(one) != stable_hash(
        one.cast(pa.schema([("a", pa.int32()), ("s", pa.string())]))
    )
    batch = pa.record_batch({"a": [1, 2, 3], "s": ["x", "y", "z"]})
    assert stable_hash(batch) == stable_hash(
        pa.record_batch({"a": [1, 2, 3], "s": ["x", "y", "z"]})
    )
    assert stable_hash(pa.array([1, 2])) == stable_hash(pa.chunked_array([[1], [2]]))
    assert stable_hash(pa.array([1, 2])) == stable_hash(pa.array([0, 1, 2]).slice(1))


def test_self_referencing_structures_do_not_crash() -> None:
    a: list[Any] = [1]
    a.append(a)
    b: list[Any] = [1]
    b.append(b)
    assert stable_hash(a) is not None
    assert stable_hash(a) == stable_hash(b)
    d: dict[str, Any] = {}
    d["self"] = d
    assert stable_hash(d) is not None


def test_very_deep_nesting_is_unhashable_not_a_crash() -> None:
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.warns(LegatoCacheWarning, match="nested"):
        assert stable_hash(deep) is None


def test_functions_hash_stably() -> None:
    assert stable_hash(len) == stable_hash(len)
    assert stable_hash(frame) == stable_hash(frame)


def test_unhashable_input_warns_once_per_type() -> None:
    class Holder:
        def __init__(self) -> None:
            self.lock = threading.Lock()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            assert stable_hash({"h": Holder()}) is None
            assert hash_inputs({"client": Holder(), "n": 1}) is None
    ours = [w for w in caught if issubclass(w.category, LegatoCacheWarning)]
    assert len(ours) == 1
    msg = str(ours[0].message)
    assert "Holder" in msg and "not be cached" in msg
    assert "cache_key_fn" in msg and "INPUTS - 'name'" in msg


def test_warning_names_the_argument() -> None:
    class Conn:
        def __reduce__(self) -> Any:
            raise TypeError("sockets cannot be pickled")

    with pytest.warns(LegatoCacheWarning, match=r"argument 'conn' \(at \[0\]\).*sockets"):
        assert hash_inputs({"conn": [Conn()], "n": 1}) is None


# Class names (with their module) are part of the hash, so the child imports this very module
# under the name pytest gave it.
STABILITY_SCRIPT = """
import importlib, sys
sys.path[:0] = {paths!r}
complex_input = importlib.import_module({module!r}).complex_input
from legato.hashing import stable_hash
print(stable_hash(complex_input(), "salt", {{"k": {{"x", "y", "z"}}}}))
"""


def test_hash_is_stable_across_processes_and_hash_seeds() -> None:
    expected = stable_hash(complex_input(), "salt", {"k": {"x", "y", "z"}})
    here = Path(__file__).parent
    script = STABILITY_SCRIPT.format(paths=[str(here), str(here.parent)], module=__name__)
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected


def test_hashing_a_dict_does_not_import_dataframe_libraries() -> None:
    code = (
        "import sys; from legato.hashing import stable_hash; "
        "stable_hash({'a': [1, 2.0, 'x', None]}); "
        "print([m for m in ('pandas', 'numpy', 'pyarrow', 'cloudpickle') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _ctx(fn: Any, key: str) -> SimpleNamespace:
    return SimpleNamespace(
        task=SimpleNamespace(fn=fn, task_key=key, name=fn.__name__),
        task_run=SimpleNamespace(id=uuid.uuid4(), flow_run_id=uuid.uuid4()),
        parameters={},
    )


def add_one(x: int) -> int:
    return x + 1


def add_two(x: int) -> int:
    return x + 2


def test_task_input_hash() -> None:
    args = {"x": 1, "df": frame()}
    key = task_input_hash(_ctx(add_one, "add"), args)
    assert key is not None
    # equal arguments in another run (different run ids) give the same key
    assert task_input_hash(_ctx(add_one, "add"), {"x": 1, "df": frame()}) == key
    assert task_input_hash(_ctx(add_one, "add"), {"x": 2, "df": frame()}) != key
    # same task_key but a different body: the cache must not be shared
    assert task_input_hash(_ctx(add_two, "add"), args) != key
    assert task_input_hash(_ctx(add_one, "other"), args) != key


def test_task_input_hash_none_for_unhashable_argument() -> None:
    class Unpicklable:
        def __reduce__(self) -> Any:
            raise TypeError("no")

    with pytest.warns(LegatoCacheWarning):
        assert task_input_hash(_ctx(add_one, "add"), {"x": Unpicklable()}) is None
