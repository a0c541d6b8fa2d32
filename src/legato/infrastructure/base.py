"""What every infrastructure block shares: the launch description, the handle on a started flow
run, the merge rules for command/env/labels/name, and work-pool job templates.

An infrastructure block says *where* a deployment's flow run executes (a local process, a Docker
container, a Kubernetes Job). The agent or worker calls ``infra.start(launch)`` with a
:class:`FlowRunLaunch`; ``start`` returns at once with an :class:`InfrastructureHandle` that can
``poll``, ``wait`` for and ``kill`` what it started. ``infra.kill(identifier)`` does the same from
the bare identifier, e.g. after the agent restarted.

Merge rules (the block's values win): the command is the block's ``command``, else the launch's,
else the type's default (``python -m legato.engine.deployed <flow-run-id>``); ``env`` and
``labels`` are the launch's updated with the block's (an ``env`` value of ``None`` removes the
variable); the name is the block's ``name``, else the launch's.

Also here: rendering a work pool's job template, and JSON Patch (RFC 6902) for
``KubernetesJob.customizations``.
"""

from __future__ import annotations

import copy
import re
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field, ValidationError, field_validator
from pydantic_core import to_jsonable_python

from ..blocks.core import Block
from ..exceptions import BlockError, ObjectNotFound

__all__ = [
    "FlowRunLaunch", "Infrastructure", "InfrastructureHandle", "InfrastructureNotFound",
    "apply_json_patch", "default_image",
]

DEPLOYED_ENTRYPOINT = "legato.engine.deployed"
# a job_configuration value that is exactly one placeholder takes the variable's value (of any
# type); placeholders inside longer strings are replaced by the value as text
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_MISSING = object()
_PATCH_OPS = {"add", "remove", "replace", "move", "copy", "test"}


class InfrastructureNotFound(ObjectNotFound):
    """The process, container or job an identifier names is gone (or never existed)."""


@dataclass
class FlowRunLaunch:
    """What the agent asks an infrastructure block to start: one flow run.

    ``command`` ``None`` means the type's default (run the flow run by id with
    ``legato.engine.deployed``); ``env`` carries the API URL and the flow run id; ``labels``
    identify the run on the infrastructure (container and Job labels).
    """

    flow_run_id: str
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.flow_run_id, str) or not self.flow_run_id:
            raise BlockError(f"FlowRunLaunch needs the flow run's id, got {self.flow_run_id!r}.")


class InfrastructureHandle:
    """A started flow run's process, container or job. ``identifier`` is what ``kill`` takes
    after a restart; ``poll``/``wait`` answer the exit code (``None`` while it runs)."""

    identifier: str

    def poll(self) -> int | None:
        """The exit code once finished, else ``None``."""
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> int:
        """Block until finished and return the exit code; a timeout raises
        :class:`~legato.exceptions.LegatoTimeoutError` (the run keeps going)."""
        raise NotImplementedError

    def kill(self, grace_seconds: float = 30) -> None:
        """Ask it to stop (SIGTERM), and force it (SIGKILL) after ``grace_seconds``. Killing
        something that already finished is not an error."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.identifier}>"


def default_image() -> str:
    """The image a container runs when the block names none: the slim official Python image of
    the agent's own Python version (it must have Legato installed to run a flow)."""
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def _string_command_too(schema: dict[str, Any]) -> None:
    # the schema (a work pool's variables) also accepts a command as one string, as Prefect's
    schema.setdefault("anyOf", []).insert(0, {"type": "string"})


class Infrastructure(Block):
    """Base class of the infrastructure blocks. Subclasses set ``type``, implement ``start`` and
    ``kill``, and may override ``_default_command``."""

    _block_type_name = "Infrastructure"
    # the work-pool type names this class answers to (infrastructure_for_type)
    _pool_types: ClassVar[tuple[str, ...]] = ()

    type: str = Field(default="infrastructure", description="The infrastructure type.")
    env: dict[str, str | None] = Field(
        default_factory=dict, title="Environment",
        description="Environment variables for the flow run, set over the agent's (a null "
        "value removes a variable).")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels put on the flow run's process, container or "
        "job, over the ones Legato sets.")
    name: str | None = Field(
        default=None, description="A name for the container or job; empty: the flow run's "
        "name.")
    command: list[str] | None = Field(
        default=None, description="The command to run instead of the default "
        "(python -m legato.engine.deployed <flow-run-id>): a list, or one string split as a "
        "shell would.", json_schema_extra=_string_command_too)

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        # Prefect accepts a command as one string; split it as a shell would (no expansion)
        if isinstance(value, str):
            import shlex  # lazy: only string commands need it

            return shlex.split(value) or None
        return value

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("command is an empty list; give the program to run, or null for "
                             "the default command")
        return value

    # -- what to start -------------------------------------------------------------------------
    def start(self, launch: FlowRunLaunch) -> InfrastructureHandle:
        """Start the flow run ``launch`` describes; returns at once."""
        raise NotImplementedError

    def kill(self, identifier: str, grace_seconds: float = 30) -> None:
        """Stop what ``identifier`` (a handle's ``identifier``) names: SIGTERM, then SIGKILL
        after ``grace_seconds``. Raises :class:`InfrastructureNotFound` if it is gone."""
        raise NotImplementedError

    def _default_command(self, launch: FlowRunLaunch) -> list[str]:
        return ["python", "-m", DEPLOYED_ENTRYPOINT, launch.flow_run_id]

    def resolved_command(self, launch: FlowRunLaunch) -> list[str]:
        """The command that runs: the block's, else the launch's, else the default."""
        if self.command:
            return list(self.command)
        if launch.command:
            return list(launch.command)
        return self._default_command(launch)

    def resolved_env(self, launch: FlowRunLaunch, base: dict[str, str] | None = None,
                     ) -> dict[str, str]:
        """``base`` (the agent's environment for a process, nothing for a container) updated
        with the launch's env, then the block's; ``None`` values remove a variable."""
        env: dict[str, str] = dict(base or {})
        for layer in (launch.env, self.env):
            for key, value in layer.items():
                if value is None:
                    env.pop(key, None)
                else:
                    env[str(key)] = str(value)
        return env

    def resolved_labels(self, launch: FlowRunLaunch) -> dict[str, str]:
        return {**{str(k): str(v) for k, v in launch.labels.items()},
                **{str(k): str(v) for k, v in self.labels.items()}}

    def resolved_name(self, launch: FlowRunLaunch) -> str | None:
        return self.name or launch.name

    # -- work pools ----------------------------------------------------------------------------
    @classmethod
    def _job_variable_names(cls) -> list[str]:
        return [name for name in cls.model_fields if name != "type"]

    @classmethod
    def base_job_template(cls) -> dict[str, Any]:
        """The default base job template of a work pool of this type: every field is a job
        variable (JSON schema with its default) placed into the job configuration."""
        schema = cls.model_json_schema()
        props: dict[str, Any] = {}
        for name in cls._job_variable_names():
            prop = copy.deepcopy(schema["properties"][name])
            default = cls.model_fields[name].get_default(call_default_factory=True)
            prop["default"] = to_jsonable_python(default)
            props[name] = prop
        variables: dict[str, Any] = {"type": "object", "properties": props}
        if "$defs" in schema:
            variables["$defs"] = schema["$defs"]
        return {"job_configuration": {n: "{{ " + n + " }}" for n in props},
                "variables": variables}

    @classmethod
    def from_job_variables(cls, base_job_template: dict[str, Any],
                           job_variables: dict[str, Any] | None = None) -> Infrastructure:
        """The block a deployment's flow run gets on a work pool: the template's variable
        defaults, overridden by the deployment's ``job_variables``, put into the template's job
        configuration. An unknown variable or a value of the wrong type raises BlockError."""
        job_variables = dict(job_variables or {})
        if not isinstance(base_job_template, dict):
            raise BlockError("The work pool's base job template must be an object with "
                             "'job_configuration' and 'variables'.")
        variables = base_job_template.get("variables") or {}
        props: dict[str, Any] = variables.get("properties") or {}
        unknown = sorted(set(job_variables) - set(props))
        if unknown:
            raise BlockError(
                f"Unknown job variable(s) {', '.join(map(repr, unknown))} for a "
                f"{cls.get_block_type_name()} work pool; it accepts: "
                f"{', '.join(sorted(props)) or '(none)'}. Fix the deployment's job_variables, "
                "or add the variable to the pool's base job template.")
        values = {k: copy.deepcopy(p["default"]) for k, p in props.items()
                  if isinstance(p, dict) and "default" in p}
        values.update(job_variables)
        _check_variables(cls, variables, values)
        config = _render(base_job_template.get("job_configuration") or {}, values)
        if not isinstance(config, dict):
            raise BlockError("The work pool's job_configuration must be an object.")
        stray = sorted(set(config) - set(cls._job_variable_names()) - {"type"})
        if stray:
            raise BlockError(
                f"The work pool's job_configuration has {', '.join(map(repr, stray))}, which a "
                f"{cls.get_block_type_name()} does not have; it takes: "
                f"{', '.join(cls._job_variable_names())}.")
        config.pop("type", None)
        try:
            return cls.model_validate(config)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(job)'}: {e['msg']}"
                for e in exc.errors())
            raise BlockError(
                f"The job variables do not make a valid {cls.get_block_type_name()}: "
                f"{problems}.") from None


def _check_variables(cls: type[Infrastructure], schema: dict[str, Any],
                     values: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator  # lazy: only work-pool runs check variables

    errors = sorted(Draft202012Validator(schema).iter_errors(values),
                    key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.absolute_path) or '(variables)'}: {e.message}"
            for e in errors)
        raise BlockError(f"Job variables for a {cls.get_block_type_name()} work pool are not "
                         f"valid: {problems}.")


def _render(template: Any, values: dict[str, Any]) -> Any:
    """``template`` with ``{{ name }}`` placeholders filled from ``values``. A value that is one
    placeholder of an unset variable is dropped (the block's default applies)."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template.strip())
        if whole:
            return copy.deepcopy(values.get(whole.group(1), _MISSING))

        def text(match: re.Match[str]) -> str:
            value = values.get(match.group(1))
            return "" if value is None else str(value)

        return _PLACEHOLDER.sub(text, template)
    if isinstance(template, dict):
        out = {k: _render(v, values) for k, v in template.items()}
        return {k: v for k, v in out.items() if v is not _MISSING}
    if isinstance(template, list):
        return [v for v in (_render(item, values) for item in template) if v is not _MISSING]
    return template


# -- JSON Patch (RFC 6902) ---------------------------------------------------------------------
def check_patch_operation(index: int, op: Any, error: type[Exception]) -> None:
    where = f"customizations[{index}]"
    if not isinstance(op, dict) or op.get("op") not in _PATCH_OPS:
        raise error(f"{where} must be an object whose 'op' is one of "
                    f"{', '.join(sorted(_PATCH_OPS))}; got {op!r}")
    for key in ("path",) + (("from",) if op["op"] in ("move", "copy") else ()):
        if not isinstance(op.get(key), str) or (op[key] and not op[key].startswith("/")):
            raise error(f"{where} needs '{key}', a JSON pointer such as "
                        f"'/spec/template/spec/containers/0/resources'; got {op.get(key)!r}")
    if op["op"] in ("add", "replace", "test") and "value" not in op:
        raise error(f"{where} ({op['op']} {op['path']}) needs a 'value'")


def _tokens(pointer: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


def _index(container: list[Any], token: str, pointer: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise KeyError(f"{token!r} is not a list index")
    i = int(token)
    if i > len(container) or (i == len(container) and not allow_end):
        raise KeyError(f"index {i} is past the end of the list (length {len(container)})")
    return i


def _resolve(doc: Any, pointer: str) -> Any:
    for token in _tokens(pointer):
        if isinstance(doc, dict):
            if token not in doc:
                raise KeyError(f"no key {token!r}")
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token, pointer, allow_end=False)]
        else:
            raise KeyError(f"{token!r} goes into a {type(doc).__name__}")
    return doc


def _parent(doc: Any, pointer: str) -> tuple[Any, str]:
    tokens = _tokens(pointer)
    parent_pointer = "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens[:-1])
    return _resolve(doc, parent_pointer), tokens[-1]


def _add(doc: Any, pointer: str, value: Any) -> Any:
    if pointer == "":
        return value
    parent, token = _parent(doc, pointer)
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, pointer, allow_end=True), value)
    else:
        raise KeyError(f"the parent of {token!r} is a {type(parent).__name__}")
    return doc


def _remove(doc: Any, pointer: str) -> tuple[Any, Any]:
    if pointer == "":
        raise KeyError("cannot remove the whole document")
    parent, token = _parent(doc, pointer)
    if isinstance(parent, dict):
        if token not in parent:
            raise KeyError(f"no key {token!r}")
        return doc, parent.pop(token)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, token, pointer, allow_end=False))
    raise KeyError(f"the parent of {token!r} is a {type(parent).__name__}")


def apply_json_patch(document: Any, operations: list[dict[str, Any]]) -> Any:
    """``document`` (not changed) with the RFC 6902 ``operations`` applied in order. A failing
    operation raises BlockError naming it and why."""
    doc = copy.deepcopy(document)
    for i, op in enumerate(operations):
        check_patch_operation(i, op, BlockError)
        kind, path = op["op"], op["path"]
        try:
            if kind == "add":
                doc = _add(doc, path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                doc, _ = _remove(doc, path)
            elif kind == "replace":
                _resolve(doc, path)
                doc, _ = (op["value"], None) if path == "" else _remove(doc, path)
                doc = _add(doc, path, copy.deepcopy(op["value"]))
            elif kind == "move":
                source = op["from"]
                if path.startswith(source + "/"):
                    raise KeyError("cannot move a value into itself")
                doc, value = _remove(doc, source)
                doc = _add(doc, path, value)
            elif kind == "copy":
                doc = _add(doc, path, copy.deepcopy(_resolve(doc, op["from"])))
            elif _resolve(doc, path) != op["value"]:
                raise KeyError(f"the value is {_resolve(doc, path)!r}, not {op['value']!r}")
        except KeyError as exc:
            reason = exc.args[0] if exc.args else exc
            raise BlockError(f"customizations[{i}] ({kind} {path}) cannot be applied: "
                             f"{reason}.") from None
    return doc
