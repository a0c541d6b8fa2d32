"""``legato deploy``: the deployments of a project file (Prefect 3's ``prefect.yaml``, named
``legato.yaml`` here; a ``prefect.yaml`` is read too).

```yaml
name: nyc-taxi
pull:                                    # where workers get the code (optional)
  - legato.deployments.steps.git_clone:  # or prefect.deployments.steps.git_clone
      repository: https://github.com/me/repo.git
      branch: main
deployments:
  - name: monthly
    entrypoint: flows/etl.py:gather_flow
    parameters: {color: yellow, year: 2021, months: [1, 2, 3]}
    work_pool: {name: my-pool, work_queue_name: default, job_variables: {}}
    schedules: [{cron: "0 5 1 * *", timezone: Europe/Berlin}]
    tags: [taxi]
```

Without a ``pull`` section the deployment's code is the project folder itself (workers on this
machine run it from there). ``git_clone`` becomes a saved ``GitHub`` storage block (its
``access_token`` may be ``"{{ block.secret.NAME }}"``, taken from a saved Secret block).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .deployment import Deployment, DeploymentError, schedules_from_options

PROJECT_FILES = ("legato.yaml", "prefect.yaml")
# {{ prefect.blocks.secret.NAME }}, and the same renamed: {{ legato.blocks.secret.NAME }}
_SECRET_REF = re.compile(r"^\{\{\s*(?:(?:prefect|legato)\.)?blocks?\.secret\.([\w-]+)\s*\}\}$")


def _access_token(value: Any, secret_block: Any) -> Any:
    """A git_clone step's access token: a Secret block's value for a secret reference, the
    value itself otherwise; a template that is no reference is refused, never stored."""
    if not isinstance(value, str):
        return value
    match = _SECRET_REF.match(value)
    if match:
        return secret_block.load(match.group(1)).get()
    if "{{" in value:
        raise DeploymentError(
            f"The access_token {value!r} is a template Legato does not read: write "
            "'{{ prefect.blocks.secret.NAME }}' (or legato.blocks.secret.NAME) to use the "
            "Secret block NAME.")
    return value


def find_project_file(path: str | Path | None = None) -> Path:
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise DeploymentError(f"No project file {str(p)!r}.")
        return p
    for name in PROJECT_FILES:
        if Path(name).is_file():
            return Path(name)
    raise DeploymentError("No legato.yaml (or prefect.yaml) in this folder: write one (see "
                          "docs/deployments-prefect3.md) or name it with --file.")


def load_project(path: Path) -> dict[str, Any]:
    import yaml  # lazy: only `legato deploy` reads YAML project files

    try:
        body = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DeploymentError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("deployments"), list):
        raise DeploymentError(f"{path} has no `deployments:` list.")
    return body


def ignored_sections(path: Path) -> list[str]:
    """The project file's sections Legato does not act on (Prefect's image build and push)."""
    body = load_project(path)
    return [name for name in ("build", "push") if body.get(name)]


def project_deployments(path: Path, names: list[str] | None = None) -> list[Deployment]:
    """The deployments the project file describes (all, or those named)."""
    # lazy: loading a flow imports the user's code
    from ..utilities.entrypoints import load_flow_from_entrypoint
    from ..utilities.parameter_schema import parameter_schema

    body = load_project(path)
    root = path.resolve().parent
    storage, sub_path = _storage_from_pull(body.get("pull") or [])
    known = [d.get("name") for d in body["deployments"] if isinstance(d, dict)]
    wanted = [d for d in body["deployments"] if isinstance(d, dict)
              and (not names or d.get("name") in names)]
    missing = sorted(set(names or []) - set(known))
    if missing:
        raise DeploymentError(f"{path} has no deployment named {', '.join(map(repr, missing))};"
                              f" it has: {', '.join(map(repr, known))}.")
    out = []
    for spec in wanted:
        if not spec.get("name") or not spec.get("entrypoint"):
            raise DeploymentError(f"Each deployment in {path} needs a name and an entrypoint.")
        flow = load_flow_from_entrypoint(spec["entrypoint"], base_dir=root)
        pool = spec.get("work_pool") or {}
        schedules = []
        for item in spec.get("schedules") or []:
            item = dict(item)
            active = item.pop("active", True)
            params = item.pop("parameters", {})
            [s] = schedules_from_options(**_schedule_args(item))
            schedules.append({**s, "active": active, "parameters": params})
        if spec.get("schedule"):
            schedules += schedules_from_options(**_schedule_args(dict(spec["schedule"])))
        out.append(Deployment(
            name=spec["name"], flow_name=flow.name, entrypoint=spec["entrypoint"],
            description=spec.get("description"), version=spec.get("version"),
            tags=list(spec.get("tags") or []), parameters=dict(spec.get("parameters") or {}),
            parameter_openapi_schema=parameter_schema(flow), schedules=schedules,
            work_pool_name=pool.get("name"),
            work_queue_name=pool.get("work_queue_name") or spec.get("work_queue_name")
            or "default",
            job_variables=dict(pool.get("job_variables") or {}),
            storage=storage, path=sub_path if storage is not None else str(root),
            paused=bool(spec.get("paused", False))))
    return out


def _schedule_args(item: dict[str, Any]) -> dict[str, Any]:
    allowed = {"cron", "interval", "rrule", "timezone", "anchor_date"}
    unknown = sorted(set(item) - allowed - {"day_or"})
    if unknown:
        raise DeploymentError(f"Unknown schedule field(s) {', '.join(unknown)}; a schedule takes "
                              "cron, interval or rrule, with timezone (and anchor_date).")
    return {k: v for k, v in item.items() if k in allowed}


def _storage_from_pull(steps: list[Any]) -> tuple[Any, str | None]:
    """A storage block (and a path inside it) from the pull steps Legato understands."""
    storage, sub_path = None, None
    for step in steps:
        if not isinstance(step, dict) or len(step) != 1:
            raise DeploymentError(f"A pull step is one `step.name: {{...}}` mapping, not {step!r}.")
        [(name, args)] = step.items()
        short = name.rsplit(".", 1)[-1]
        args = dict(args or {})
        if short == "git_clone":
            from ..blocks.system import Secret  # lazy: the block classes
            from ..filesystems import GitHub

            token = _access_token(args.get("access_token"), Secret)
            if not args.get("repository"):
                raise DeploymentError(f"The {name} step needs a `repository:` (a git URL).")
            try:
                storage = GitHub(repository=args["repository"], reference=args.get("branch"),
                                 access_token=token)
            except ValueError as exc:  # pydantic's ValidationError: say which and why, briefly
                problems = "; ".join(e.get("msg", "invalid") for e in getattr(
                    exc, "errors", lambda: [])()) or str(exc).splitlines()[0]
                raise DeploymentError(f"The {name} step cannot make a GitHub storage block: "
                                      f"{problems}") from None
        elif short == "set_working_directory":
            sub_path = args.get("directory")
        else:
            raise DeploymentError(f"Pull step {name!r} is not supported; Legato understands "
                                  "git_clone and set_working_directory.")
    return storage, sub_path
