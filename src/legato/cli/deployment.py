"""`legato deployment`: build, apply, list, inspect, run, schedule and delete deployments."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ._common import console, exit_with_error, handles_errors, print_json, warn

app = typer.Typer(help="Deployments: how and when flows run without `python script.py`.",
                  no_args_is_help=True)

Params = Annotated[list[str] | None, typer.Option("--param", help="A parameter, k=v (the "
                                                  "value read as JSON when it parses).")]
ParamsJson = Annotated[str | None, typer.Option("--params", help="Parameters as a JSON object.")]
Cron = Annotated[str | None, typer.Option("--cron", help="A cron schedule, e.g. '0 9 * * *'.")]
Interval = Annotated[float | None, typer.Option("--interval", help="Every N seconds.")]
RRule = Annotated[str | None, typer.Option("--rrule", help="An RFC 5545 recurrence rule.")]
Tz = Annotated[str | None, typer.Option("--timezone", help="The schedule's IANA time zone.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _client() -> Any:
    from ..client.factory import get_client  # lazy: the store, for CLI start-up time

    return get_client()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _deployment(address: str) -> dict[str, Any]:
    return _client().read_deployment_by_name(address)


def _schedules(cron: str | None, interval: float | None, rrule: str | None,
               timezone: str | None) -> list[dict[str, Any]]:
    from ..deployments import schedules_from_options  # lazy: pydantic, croniter

    return schedules_from_options(cron=cron, interval=interval, rrule=rrule, timezone=timezone)


def _describe(s: dict[str, Any]) -> str:
    body = s["schedule"]
    kind = next((k for k in ("cron", "interval", "rrule") if k in body), "?")
    value = f"every {body['interval']:g} s" if kind == "interval" else f"{kind} {body[kind]!r}"
    tz = f" ({body['timezone']})" if body.get("timezone") else ""
    return f"{value}{tz}{'' if s.get('active', True) else ' [paused]'}"


@app.command("build")
@handles_errors
def build(
    entrypoint: Annotated[str, typer.Argument(help="path/to/file.py:flow_function")],
    name: Annotated[str, typer.Option("--name", "-n", help="The deployment's name.")],
    storage_block: Annotated[str | None, typer.Option(
        "--storage-block", "-sb", help="TYPE/NAME or TYPE/NAME/PATH of a storage block, e.g. "
        "github/my-repo/flows.")] = None,
    infra_block: Annotated[str | None, typer.Option(
        "--infra-block", "-ib", help="TYPE/NAME of an infrastructure block, e.g. "
        "process/local.")] = None,
    queue: Annotated[str, typer.Option("--work-queue", "-q", help="Its work queue.")] = "default",
    pool: Annotated[str | None, typer.Option("--pool", "-p", help="Its work pool.")] = None,
    cron: Cron = None, interval: Interval = None, rrule: RRule = None, timezone: Tz = None,
    param: Params = None, params: ParamsJson = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", "-t")] = None,
    version: Annotated[str | None, typer.Option("--version", "-v")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The YAML file to "
                                                "write.")] = None,
    apply: Annotated[bool, typer.Option("--apply", "-a", help="Apply it too.")] = False,
    skip_upload: Annotated[bool, typer.Option("--skip-upload")] = False,
) -> None:
    """Build a deployment of a flow from its file (and upload the project to the storage)."""
    # lazy: the flow's module, pydantic and the block classes load only here
    from ..blocks.core import Block
    from ..deployments import Deployment
    from ..schemas.blocks import split_address
    from ..utilities.entrypoints import load_flow_from_entrypoint
    from ..utilities.parameter_schema import parameter_schema, parse_param_options

    flow = load_flow_from_entrypoint(entrypoint)
    parameters = parse_param_options(param or [], params, parameter_schema(flow))
    storage = path = None
    if storage_block:
        parts = storage_block.split("/", 2)
        if len(parts) < 2:
            exit_with_error(f"-sb takes TYPE/NAME[/PATH], not {storage_block!r}.")
        slug, block_name = split_address("/".join(parts[:2]))
        storage = Block.load(f"{slug}/{block_name}")
        path = parts[2] if len(parts) == 3 else None
    infrastructure = Block.load(infra_block) if infra_block else None
    kwargs: dict[str, Any] = {
        "entrypoint": entrypoint, "parameters": parameters, "work_queue_name": queue,
        "work_pool_name": pool, "tags": tags or [], "version": version,
        "schedules": _schedules(cron, interval, rrule, timezone),
        "storage": storage, "infrastructure": infrastructure}
    if path is not None:
        kwargs["path"] = path
    dep = Deployment.build_from_flow(flow, name=name, skip_upload=skip_upload, **kwargs)
    out = console()
    if output is not None or not apply:
        target = output or Path(f"{flow.name.replace(' ', '_').lower()}-deployment.yaml")
        dep.to_yaml(target)
        out.print(f"Deployment YAML written to {target}")
    if apply:
        dep.apply()
        out.print(f"Deployment '{flow.name}/{name}' applied (work queue {queue!r}).")
        out.print(f"Run it with: legato deployment run '{flow.name}/{name}'")


@app.command("apply")
@handles_errors
def apply_file(path: Path) -> None:
    """Apply a deployment YAML file written by `legato deployment build`."""
    from ..deployments import Deployment  # lazy: pydantic

    dep = Deployment.load_from_yaml(path)
    dep.apply()
    console().print(f"Deployment '{dep.flow_name}/{dep.name}' applied "
                    f"(work queue {dep.work_queue_name!r}).")


@app.command("ls")
@handles_errors
def ls(flow_name: Annotated[str | None, typer.Option("--flow-name")] = None,
       json_out: JsonOut = False) -> None:
    """List deployments."""
    deps = _client().read_deployments(flow_name, limit=10_000)
    if json_out:
        print_json(_jsonable(deps))
        return
    table = Table("Name", "Work queue", "Schedules")
    table.add_column("ID", overflow="fold", min_width=36)
    for d in deps:
        table.add_row(f"{d['flow_name']}/{d['name']}", str(d.get("work_queue_name") or ""),
                      "; ".join(_describe(s) for s in d["schedules"]) or "-", str(d["id"]))
    console().print(table)


@app.command("inspect")
@handles_errors
def inspect(address: Annotated[str, typer.Argument(help="FLOW NAME/DEPLOYMENT NAME")],
            json_out: JsonOut = False) -> None:
    """Show a deployment."""
    d = _jsonable(_deployment(address))
    if json_out:
        print_json(d)
        return
    out = console()
    out.print(f"{d['flow_name']}/{d['name']}  (id {d['id']})")
    for key in ("description", "version", "entrypoint", "path", "work_queue_name",
                "work_pool_name", "tags", "parameters", "paused"):
        out.print(f"  {key}: {d.get(key)}")
    for s in d["schedules"]:
        out.print(f"  schedule {s['id']}: {_describe(s)}")


@app.command("delete")
@handles_errors
def delete(address: str) -> None:
    """Delete a deployment (and its runs that have not started)."""
    d = _deployment(address)
    _client().delete_deployment(str(d["id"]))
    console().print(f"Deleted deployment {address!r}.")


@app.command("run")
@handles_errors
def run(
    address: Annotated[str, typer.Argument(help="FLOW NAME/DEPLOYMENT NAME")],
    param: Params = None, params: ParamsJson = None,
    start_in: Annotated[str | None, typer.Option("--start-in", help="e.g. 10m, 2h, 30s")] = None,
    start_at: Annotated[str | None, typer.Option("--start-at", help="An ISO 8601 time.")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Wait for the run to finish.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Create a run of a deployment (checked against its parameter schema first)."""
    from ..utilities.parameter_schema import parse_param_options  # lazy: pydantic

    client = _client()
    d = _deployment(address)
    parameters = parse_param_options(param or [], params, d.get("parameter_openapi_schema"))
    when = _when(start_in, start_at)
    run_ = client.create_flow_run_from_deployment(str(d["id"]), parameters=parameters,
                                                  scheduled_time=when)
    if json_out and not watch:
        print_json(_jsonable(run_))
        return
    out = console()
    out.print(f"Created flow run {run_['name']!r} ({run_['id']}) of {address!r}, scheduled "
              f"for {run_['expected_start_time']} on work queue {run_['work_queue_name']!r}.")
    if watch:
        final = _watch(client, str(run_["id"]))
        out.print(f"Flow run {run_['name']!r} finished in state {final.state_name}.")
        if final.state_type.value != "COMPLETED":
            raise typer.Exit(1)


def _when(start_in: str | None, start_at: str | None) -> dt.datetime | None:
    if start_in and start_at:
        exit_with_error("Give --start-in or --start-at, not both.")
    now = dt.datetime.now(dt.timezone.utc)
    if start_in:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        text = start_in.strip().lower().removeprefix("in ").replace(" ", "")
        unit = text[-1] if text[-1:] in units else "s"
        number = text[:-1] if text[-1:] in units else text
        try:
            return now + dt.timedelta(seconds=float(number) * units[unit])
        except ValueError:
            exit_with_error(f"--start-in {start_in!r}: write it as 30s, 10m, 2h or 1d.")
    if start_at:
        try:
            when = dt.datetime.fromisoformat(start_at)
        except ValueError:
            exit_with_error(f"--start-at {start_at!r} is not an ISO 8601 time "
                            "(e.g. 2026-12-01T09:00:00+01:00).")
        return when if when.tzinfo else when.astimezone()
    return None


def _watch(client: Any, run_id: str) -> Any:
    from ..states import TERMINAL_TYPES

    seen = None
    while True:
        r = client.read_flow_run(run_id)
        if r.state_name != seen:
            console().print(f"  {r.state_name}")
            seen = r.state_name
        if r.state_type in TERMINAL_TYPES:
            return r
        time.sleep(0.5)


@app.command("set-schedule")
@handles_errors
def set_schedule(address: str, cron: Cron = None, interval: Interval = None,
                 rrule: RRule = None, timezone: Tz = None) -> None:
    """Replace a deployment's schedules with this one."""
    d = _deployment(address)
    schedules = _schedules(cron, interval, rrule, timezone)
    if not schedules:
        exit_with_error("Give --cron, --interval or --rrule.")
    _client().replace_schedules(str(d["id"]), schedules)
    console().print(f"Schedule of {address!r} set: {_describe(schedules[0])}.")


@app.command("clear-schedule")
@handles_errors
def clear_schedule(address: str) -> None:
    """Remove every schedule of a deployment."""
    d = _deployment(address)
    _client().replace_schedules(str(d["id"]), [])
    console().print(f"Schedules of {address!r} removed.")


@app.command("pause-schedule")
@handles_errors
def pause_schedule(address: str) -> None:
    """Pause a deployment's schedules (their runs not yet claimed are removed)."""
    d = _deployment(address)
    _client().set_schedules_active(str(d["id"]), False)
    console().print(f"Schedules of {address!r} paused.")


@app.command("resume-schedule")
@handles_errors
def resume_schedule(address: str) -> None:
    """Resume a deployment's schedules."""
    d = _deployment(address)
    _client().set_schedules_active(str(d["id"]), True)
    console().print(f"Schedules of {address!r} resumed.")


@app.command("backfill")
@handles_errors
def backfill(address: str,
             start: Annotated[str, typer.Option("--start", help="ISO 8601 time.")],
             end: Annotated[str, typer.Option("--end", help="ISO 8601 time.")]) -> None:
    """Create the runs the schedules would have made in a past window (each time once)."""
    d = _deployment(address)
    try:
        lo, hi = (dt.datetime.fromisoformat(x) for x in (start, end))
    except ValueError:
        exit_with_error("--start and --end take ISO 8601 times, e.g. 2026-01-01T00:00:00Z.")
    lo, hi = (x if x.tzinfo else x.replace(tzinfo=dt.timezone.utc) for x in (lo, hi))
    if hi < lo:
        exit_with_error("--end is before --start.")
    got = _client().backfill(str(d["id"]), lo, hi)
    console().print(f"Backfill of {address!r}: {got['made']} run(s) created, "
                    f"{got['existing']} already there.")


def deploy(
    names: Annotated[list[str] | None, typer.Option("--name", "-n", help="Only this deployment "
                                                    "of the project file (repeatable).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every deployment of the file.")] = False,
    file: Annotated[Path | None, typer.Option("--file", help="The project file (default: "
                                              "legato.yaml, else prefect.yaml).")] = None,
) -> None:
    """Apply the deployments of the project file (Prefect 3's `prefect deploy`)."""
    # lazy: yaml
    from ..deployments.project import find_project_file, ignored_sections, project_deployments

    if not names and not all_:
        exit_with_error("Say which deployments: --name NAME (repeatable) or --all.")
    path = find_project_file(file)
    out = console()
    for section in ignored_sections(path):
        warn(f"The `{section}:` section of {path} is ignored: Legato builds and pushes no "
             "images (record an image a worker can pull in the work pool's job variables).")
    for dep in project_deployments(path, None if all_ else names):
        dep.apply()
        where = f"work pool {dep.work_pool_name!r}" if dep.work_pool_name else \
            f"work queue {dep.work_queue_name!r}"
        out.print(f"Deployment '{dep.flow_name}/{dep.name}' applied ({where}).")
