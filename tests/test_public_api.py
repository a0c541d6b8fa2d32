"""The public face is a decision: these tests pin the names users import (compat.md) and the
rule that lower layers never import higher ones (architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import legato

SRC = Path(legato.__file__).parent


def test_top_level_names_are_pinned() -> None:
    assert sorted(legato.__all__) == sorted(
        [
            "Flow", "LegatoFuture", "LegatoFutureList", "State", "Task", "__version__",
            "allow_failure", "as_completed", "flow", "get_logger", "get_run_context",
            "get_run_logger", "quote", "serve", "tags", "task", "unmapped", "wait",
        ]
    )
    for name in legato.__all__:
        assert getattr(legato, name) is not None


def test_prefect_module_paths_used_by_the_seed_exist() -> None:
    from legato import flow, get_run_logger, task  # noqa: F401
    from legato.cache_policies import DEFAULT, INPUTS, NO_CACHE, TASK_SOURCE  # noqa: F401
    from legato.futures import LegatoFuture, as_completed, wait  # noqa: F401
    from legato.runtime import flow_run, task_run  # noqa: F401
    from legato.states import Cached, Completed, Crashed, Failed, Pending, Running  # noqa: F401
    from legato.task_runners import (  # noqa: F401
        ConcurrentTaskRunner,
        SequentialTaskRunner,
        ThreadPoolTaskRunner,
    )
    from legato.tasks import exponential_backoff, task_input_hash  # noqa: F401


def test_import_legato_has_no_heavy_dependencies_or_side_effects() -> None:
    code = (
        "import sys, logging; from legato import flow, task, get_run_logger; "
        "heavy = [m for m in ('sqlalchemy', 'pydantic', 'asyncio', 'pandas', 'alembic', 'typer') "
        "if m in sys.modules]; "
        "print(heavy, logging.getLogger('legato').handlers)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


# layers, lowest first; a module may import its own layer and lower ones only
LAYERS = [
    {"exceptions", "ids", "states", "settings", "version", "schedules", "redaction",
     "processes"},
    {"schemas"},
    {"store"},
    {"core"},
    {"client"},
    {"context", "futures", "utilities", "results", "hashing", "cache_policies", "logging",
     "runners", "task_runners", "engine", "tasks", "flows", "runtime"},
    {"blocks", "filesystems", "gcp", "aws", "warehouses", "_filesystems", "infrastructure"},
    {"deployments", "workers"},
    {"server"},
    {"cli"},
]


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"module legato.{module} is in no layer; add it to LAYERS")


def test_layers_point_down() -> None:
    problems = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        parts = rel.parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or parts[0] in ("store",) and "migrations" in parts:
            continue
        me = ".".join(parts)
        my_layer = _layer(me)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(parts if path.name == "__init__.py" else parts[:-1])
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
                if not target:
                    # `from . import x` at the package root
                    targets = [a.name for a in node.names]
                else:
                    targets = [target]
                for t in targets:
                    if _layer(t) > my_layer:
                        problems.append(f"legato.{me} imports legato.{t}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("legato."):
                t = node.module.split(".", 1)[1]
                if _layer(t) > my_layer:
                    problems.append(f"legato.{me} imports legato.{t}")
    assert not problems, "imports pointing up:\n" + "\n".join(problems)
