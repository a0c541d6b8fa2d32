"""Loading a flow from a deployment's entrypoint ("path/file.py:fn" or "pkg.module:fn"), and the
entrypoint of a flow (what Deployment.build_from_flow stores). Flow files are written to
tmp_path and really imported and run."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from legato import flow
from legato.exceptions import LegatoError
from legato.flows import Flow
from legato.utilities.entrypoints import (
    EntrypointError,
    EntrypointNotFound,
    FlowScriptError,
    flow_entrypoint_of,
    load_flow_from_entrypoint,
)
from legato.utilities.parameter_schema import parameter_schema

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "examples" / "nyc_taxi"

ETL = """
from legato import flow

@flow(name="etl")
def my_flow(year: int, months: list[int] = [1]):
    return year + sum(months)

def helper():
    return 1

if __name__ == "__main__":
    raise SystemExit("the __main__ block must not run when loaded")
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# --- loading ---------------------------------------------------------------------------------


def test_file_entrypoint_relative_to_base_dir_loads_a_flow_that_runs(tmp_path):
    write(tmp_path / "flows" / "etl.py", ETL)
    loaded = load_flow_from_entrypoint("flows/etl.py:my_flow", base_dir=tmp_path)
    assert isinstance(loaded, Flow)
    assert loaded.name == "etl"
    assert loaded(2020, [1, 2]) == 2023
    assert loaded(year="2020") == 2021  # the flow's own parameter validation still applies


def test_file_entrypoint_relative_to_cwd_and_absolute(tmp_path, monkeypatch):
    path = write(tmp_path / "etl.py", ETL)
    monkeypatch.chdir(tmp_path)
    assert load_flow_from_entrypoint("etl.py:my_flow").name == "etl"
    assert load_flow_from_entrypoint("./etl.py:my_flow").name == "etl"
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    assert load_flow_from_entrypoint(f"{path}:my_flow", base_dir=elsewhere).name == "etl"


def test_sibling_imports_work_and_sys_path_is_restored(tmp_path):
    write(tmp_path / "proj" / "helpers_for_entrypoint_test.py", "FACTOR = 10\n")
    write(tmp_path / "proj" / "main.py", """
        from legato import flow
        from helpers_for_entrypoint_test import FACTOR

        @flow
        def scaled(x: int) -> int:
            return x * FACTOR
    """)
    before = list(sys.path)
    try:
        loaded = load_flow_from_entrypoint("proj/main.py:scaled", base_dir=tmp_path)
        assert sys.path == before
        assert loaded(3) == 30
    finally:
        sys.modules.pop("helpers_for_entrypoint_test", None)


def test_a_changed_file_is_loaded_again(tmp_path):
    path = write(tmp_path / "etl.py", ETL)
    assert load_flow_from_entrypoint("etl.py:my_flow", tmp_path)(1, [1]) == 2
    write(path, ETL.replace("year + sum(months)", "year * 100"))
    assert load_flow_from_entrypoint("etl.py:my_flow", tmp_path)(1, [1]) == 100


def test_module_entrypoint(tmp_path, monkeypatch):
    write(tmp_path / "entrypoint_test_pkg" / "__init__.py", "")
    write(tmp_path / "entrypoint_test_pkg" / "flows.py", ETL)
    try:
        loaded = load_flow_from_entrypoint("entrypoint_test_pkg.flows:my_flow", tmp_path)
        assert loaded.name == "etl" and loaded(1, [2]) == 3
        assert str(tmp_path) not in sys.path
    finally:
        for name in ("entrypoint_test_pkg", "entrypoint_test_pkg.flows"):
            sys.modules.pop(name, None)


def test_schema_of_a_loaded_flow_with_its_own_types(tmp_path):
    write(tmp_path / "typed.py", """
        from __future__ import annotations

        import dataclasses
        from pydantic import BaseModel
        from legato import flow

        class Config(BaseModel):
            bucket: str

        @dataclasses.dataclass
        class Window:
            start: int = 0

        @flow
        def typed(config: Config, window: Window = Window()) -> str:
            return config.bucket
    """)
    loaded = load_flow_from_entrypoint("typed.py:typed", tmp_path)
    schema = parameter_schema(loaded)
    assert schema["properties"]["config"]["$ref"] == "#/definitions/Config"
    assert schema["properties"]["window"]["default"] == {"start": 0}
    assert loaded({"bucket": "b"}) == "b"


def test_seed_example_flow_loads_by_entrypoint():
    loaded = load_flow_from_entrypoint("etl_web_to_local.py:gather_flow", base_dir=EXAMPLE_DIR)
    assert loaded.name == "Parent GCP flow"
    schema = parameter_schema(loaded)
    assert schema["required"] == ["color", "year", "months"]
    assert schema["properties"]["months"]["items"] == {"type": "integer"}
    assert flow_entrypoint_of(loaded, EXAMPLE_DIR.parent) == "nyc_taxi/etl_web_to_local.py:gather_flow"


# --- loading errors --------------------------------------------------------------------------


def test_missing_file_names_the_path_looked_at(tmp_path):
    with pytest.raises(EntrypointNotFound) as info:
        load_flow_from_entrypoint("flows/nope.py:my_flow", base_dir=tmp_path)
    assert str(tmp_path / "flows" / "nope.py") in str(info.value)
    assert "does not exist" in str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, LegatoError)
    (tmp_path / "folder.py").mkdir()
    with pytest.raises(EntrypointNotFound, match="is a folder, not a file"):
        load_flow_from_entrypoint("folder.py:f", base_dir=tmp_path)


@pytest.mark.parametrize("body, expected", [
    ("def broken(:\n    pass\n", "SyntaxError"),
    ("import not_a_module_for_legato_tests\n",
     "ModuleNotFoundError: No module named 'not_a_module_for_legato_tests'"),
    ("raise RuntimeError('config missing')\n", "RuntimeError: config missing"),
    ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
])
def test_errors_while_importing_say_which_file(tmp_path, body, expected):
    path = write(tmp_path / "bad.py", body)
    with pytest.raises(FlowScriptError) as info:
        load_flow_from_entrypoint("bad.py:f", base_dir=tmp_path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)
    assert info.value.__cause__ is not None  # the original error, with its traceback
    assert not any(name.startswith("legato_flow_bad_") for name in sys.modules)


def test_missing_attribute_lists_the_flows(tmp_path):
    write(tmp_path / "etl.py", ETL + "\n@flow\ndef other():\n    pass\n")
    with pytest.raises(EntrypointError) as info:
        load_flow_from_entrypoint("etl.py:my_flw", tmp_path)
    msg = str(info.value)
    assert "has no 'my_flw'" in msg and str(tmp_path / "etl.py") in msg
    assert "Flows it defines: my_flow, other." in msg
    write(tmp_path / "none.py", "x = 1\n")
    with pytest.raises(EntrypointError, match="defines no flows: decorate the function with @flow"):
        load_flow_from_entrypoint("none.py:main", tmp_path)


def test_attribute_that_is_not_a_flow(tmp_path):
    write(tmp_path / "etl.py", ETL + textwrap.dedent("""
        from legato import task

        @task
        def a_task():
            pass

        async def coro():
            pass

        count = 3
    """))
    with pytest.raises(EntrypointError, match="'helper' in .* is a plain function, not a flow: "
                                               "decorate it with @flow"):
        load_flow_from_entrypoint("etl.py:helper", tmp_path)
    with pytest.raises(EntrypointError, match="'coro' in .* is a plain function"):
        load_flow_from_entrypoint("etl.py:coro", tmp_path)
    with pytest.raises(EntrypointError, match="'a_task' in .* is a Task, not a flow"):
        load_flow_from_entrypoint("etl.py:a_task", tmp_path)
    with pytest.raises(EntrypointError, match="'count' in .* is an int, not a flow"):
        load_flow_from_entrypoint("etl.py:count", tmp_path)


@pytest.mark.parametrize("entrypoint", ["etl.py", "etl.py:", ":my_flow", "etl.py:my-flow", ""])
def test_malformed_entrypoints(tmp_path, entrypoint):
    with pytest.raises(EntrypointError, match="must be 'path/to/file.py:flow_function' or "
                                              "'package.module:flow_function'"):
        load_flow_from_entrypoint(entrypoint, tmp_path)


def test_module_errors(tmp_path):
    with pytest.raises(EntrypointNotFound, match="No module named 'no_such_pkg_for_legato'"):
        load_flow_from_entrypoint("no_such_pkg_for_legato.flows:f", tmp_path)
    write(tmp_path / "entrypoint_test_broken.py", "import not_a_module_for_legato_tests\n")
    try:
        with pytest.raises(FlowScriptError, match="Importing module 'entrypoint_test_broken' "
                                                  "failed: ModuleNotFoundError"):
            load_flow_from_entrypoint("entrypoint_test_broken:f", tmp_path)
    finally:
        sys.modules.pop("entrypoint_test_broken", None)


# --- the entrypoint of a flow ----------------------------------------------------------------


def test_entrypoint_of_a_flow_in_a_file_round_trips(tmp_path, monkeypatch):
    write(tmp_path / "flows" / "etl.py", ETL + "\nrenamed = flow(helper, name='renamed')\n")
    loaded = load_flow_from_entrypoint("flows/etl.py:my_flow", tmp_path)
    entrypoint = flow_entrypoint_of(loaded, root=tmp_path)
    assert entrypoint == "flows/etl.py:my_flow"
    assert load_flow_from_entrypoint(entrypoint, tmp_path)(1) == 2
    # the folder given as the deployment's path
    assert flow_entrypoint_of(loaded, root=tmp_path / "flows") == "etl.py:my_flow"
    # the attribute that holds the flow, not the function's name
    renamed = load_flow_from_entrypoint("flows/etl.py:renamed", tmp_path)
    assert flow_entrypoint_of(renamed, root=str(tmp_path)) == "flows/etl.py:renamed"
    monkeypatch.chdir(tmp_path)
    assert flow_entrypoint_of(loaded) == "flows/etl.py:my_flow"


def test_entrypoint_of_a_flow_outside_the_root(tmp_path):
    write(tmp_path / "a" / "etl.py", ETL)
    (tmp_path / "b").mkdir()
    loaded = load_flow_from_entrypoint("a/etl.py:my_flow", tmp_path)
    with pytest.raises(EntrypointError, match="is not under .*b; pass as path the folder"):
        flow_entrypoint_of(loaded, root=tmp_path / "b")


def test_entrypoint_of_flows_that_cannot_be_loaded_again():
    @flow
    def local_flow():
        pass

    with pytest.raises(EntrypointError, match="defined inside a function"):
        flow_entrypoint_of(local_flow, root=Path(__file__).parent)
    namespace: dict = {}
    exec(compile("from legato import flow\n@flow\ndef typed_in():\n    pass\n", "<stdin>",
                 "exec"), namespace)
    with pytest.raises(EntrypointError, match="not defined in a file"):
        flow_entrypoint_of(namespace["typed_in"])
