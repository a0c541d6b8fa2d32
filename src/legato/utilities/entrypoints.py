"""Loading a flow from its entrypoint, and the entrypoint of a flow.

A deployment names its flow by an *entrypoint*: ``path/to/file.py:flow_function`` (relative to
the deployment's folder, as ``Deployment.build_from_flow`` writes it) or
``package.module:flow_function`` (an importable module). An agent or ``legato deployment run``
loads the flow with :func:`load_flow_from_entrypoint`:

- a file is executed as a fresh module each time it is loaded (so a changed file is picked up),
  with its own folder first on ``sys.path`` while it runs, so ``import helpers`` of a sibling
  file works; its ``if __name__ == "__main__":`` block does not run;
- a module is imported as Python imports it, with the base folder on ``sys.path`` meanwhile.

Every failure is an :class:`EntrypointError` that says what was looked at and what to do.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from ..exceptions import LegatoError

__all__ = [
    "EntrypointError",
    "EntrypointNotFound",
    "FlowScriptError",
    "load_flow_from_entrypoint",
    "flow_entrypoint_of",
]


class EntrypointError(LegatoError):
    """An entrypoint that is malformed, or names something that is not a flow."""


class EntrypointNotFound(EntrypointError, FileNotFoundError):
    """The entrypoint's file or module does not exist."""


class FlowScriptError(EntrypointError):
    """The entrypoint's file or module raised an error while it was imported (the original
    error is the ``__cause__``, and its type and message are in this one's)."""


_FORM = "'path/to/file.py:flow_function' or 'package.module:flow_function'"


def load_flow_from_entrypoint(entrypoint: str, base_dir: str | Path | None = None) -> Any:
    """The :class:`~legato.flows.Flow` an entrypoint names.

    ``base_dir`` (default: the current directory) is the folder a relative file path is read
    from, and the folder a module is imported from.
    """
    from ..flows import Flow  # lazy: keeps this module cheap to import for the CLI's help

    module_part, attr = _split(entrypoint)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if _is_file_path(module_part):
        path = Path(module_part).expanduser()
        if not path.is_absolute():
            path = base / path
        module, where = _load_file(path, entrypoint), str(path.absolute())
    else:
        module, where = _import_module(module_part, base), f"module {module_part!r}"
    try:
        obj = getattr(module, attr)
    except AttributeError:
        flows = [name for name, value in vars(module).items() if isinstance(value, Flow)]
        listing = (f"Flows it defines: {', '.join(flows)}." if flows else
                   "It defines no flows: decorate the function with @flow (from legato "
                   "import flow).")
        raise EntrypointError(f"{where} has no {attr!r} (entrypoint {entrypoint!r}). {listing}") \
            from None
    if isinstance(obj, Flow):
        return obj
    if inspect.isfunction(obj) or inspect.iscoroutinefunction(obj):
        raise EntrypointError(
            f"{attr!r} in {where} is a plain function, not a flow: decorate it with @flow "
            "(from legato import flow)."
        )
    raise EntrypointError(
        f"{attr!r} in {where} is {_a(type(obj).__name__)}, not a flow; the entrypoint must name a "
        "function decorated with @flow."
    )


def flow_entrypoint_of(flow: Any, root: str | Path | None = None) -> str:
    """``relative/path.py:name`` for a flow defined at the top level of a file under ``root``
    (default: the current directory); ``name`` is the module attribute that holds the flow.

    Raises :class:`EntrypointError` when the flow cannot be found again from a file: defined in a
    notebook or the REPL, inside a function, or in a file outside ``root``.
    """
    fn = inspect.unwrap(getattr(flow, "fn", flow))
    flow_name = getattr(flow, "name", getattr(fn, "__name__", repr(flow)))
    code = getattr(fn, "__code__", None)
    filename = code.co_filename if code is not None else None
    if not filename or filename.startswith("<") or not os.path.exists(filename):
        raise EntrypointError(
            f"Flow {flow_name!r} is not defined in a file ({filename or 'no source file'}), so "
            "an agent could not load it: move it into a .py file and give the entrypoint "
            "'file.py:function'."
        )
    if "<locals>" in getattr(fn, "__qualname__", ""):
        raise EntrypointError(
            f"Flow {flow_name!r} is defined inside a function ({fn.__qualname__}); an entrypoint "
            "can only name a flow at the top level of its file."
        )
    root_path = Path(root if root is not None else Path.cwd()).resolve()
    file_path = Path(filename).resolve()
    try:
        relative = file_path.relative_to(root_path)
    except ValueError:
        raise EntrypointError(
            f"Flow {flow_name!r} is defined in {file_path}, which is not under {root_path}; "
            "pass as path the folder that holds the flow's file (or give the entrypoint)."
        ) from None
    return f"{relative.as_posix()}:{_attribute_name(flow, fn)}"


def _attribute_name(flow: Any, fn: Any) -> str:
    """The name under which the flow object sits in its module (``fn``'s name if not found)."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    if module is not None:
        if getattr(module, fn.__name__, None) is flow:
            return str(fn.__name__)
        for name, value in vars(module).items():
            if value is flow:
                return name
    return str(fn.__name__)


def _split(entrypoint: str) -> tuple[str, str]:
    if not isinstance(entrypoint, str) or ":" not in entrypoint:
        raise EntrypointError(f"Entrypoint {entrypoint!r} must be {_FORM}.")
    module_part, _, attr = entrypoint.rpartition(":")
    module_part, attr = module_part.strip(), attr.strip()
    if not module_part or not attr.isidentifier():
        raise EntrypointError(
            f"Entrypoint {entrypoint!r} must be {_FORM} (the part after ':' is the name of the "
            "flow function)."
        )
    return module_part, attr


def _is_file_path(text: str) -> bool:
    return text.endswith(".py") or "/" in text or os.sep in text or not all(
        part.isidentifier() for part in text.split("."))


def _load_file(path: Path, entrypoint: str) -> ModuleType:
    """Execute the file as a new module named after its absolute path."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise EntrypointNotFound(
            f"The flow file {path.absolute()} {what} (entrypoint {entrypoint!r}); entrypoint paths are "
            "relative to the deployment's folder."
        )
    path = path.resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"legato_flow_{_identifier(path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EntrypointError(f"{path} cannot be loaded as a Python module (entrypoint "
                              f"{entrypoint!r}).")
    module = importlib.util.module_from_spec(spec)
    # registered while it runs: dataclasses, pydantic and pickling look the module up by name
    sys.modules[name] = module
    try:
        with _on_sys_path(path.parent):
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise FlowScriptError(
            f"Loading the flow file {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_module(module_name: str, base: Path) -> ModuleType:
    try:
        with _on_sys_path(base.resolve()):
            return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise EntrypointNotFound(
                f"No module named {missing!r} (looked in {base.resolve()} and on sys.path) for "
                f"the entrypoint module {module_name!r}; use 'path/to/file.py:flow_function' "
                "for a file."
            ) from None
        raise FlowScriptError(
            f"Importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    except (Exception, SystemExit) as exc:
        raise FlowScriptError(
            f"Importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


@contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    entry = str(folder)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()  # files written since the last import are found
    try:
        yield
    finally:
        try:
            sys.path.remove(entry)  # the first occurrence: the one inserted above
        except ValueError:
            pass


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun
