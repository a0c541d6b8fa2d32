"""Deployments: the list, a deployment's page (schedules, parameters, upcoming and recent runs),
the Run form generated from its parameter schema, and adding, editing, pausing and resuming
schedules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ...exceptions import LegatoError, ObjectNotFound
from ...store import models
from . import back, render, with_form
from .forms import build_fields, read_form

router = APIRouter()
fr = models.flow_run


def describe(body: dict[str, Any]) -> str:
    """A schedule in words: ``cron '0 6 * * *' (Europe/Berlin)``."""
    if "cron" in body:
        text = f"cron {body['cron']}"
    elif "interval" in body:
        text = f"every {_every(float(body['interval']))}"
    elif "rrule" in body:
        text = f"rrule {body['rrule']}"
    else:
        text = "?"
    return f"{text} ({body.get('timezone') or 'UTC'})"


def _every(seconds: float) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds:g} seconds"


def _next_time(body: dict[str, Any]) -> dt.datetime | None:
    from ...schedules import schedule_from_dict  # lazy: croniter, dateutil

    try:
        return schedule_from_dict(body).next_after(dt.datetime.now(dt.timezone.utc))
    except LegatoError:
        return None


def _runs(conn: sa.Connection, deployment_id: str, upcoming: bool, limit: int
          ) -> list[dict[str, Any]]:
    q = sa.select(fr.c.id, fr.c.name, fr.c.state_type, fr.c.state_name, fr.c.start_time,
                  fr.c.expected_start_time, fr.c.created, fr.c.total_run_time, fr.c.end_time,
                  fr.c.tags, fr.c.parameters).where(fr.c.deployment_id == deployment_id)
    if upcoming:
        q = q.where(fr.c.state_type == "SCHEDULED").order_by(fr.c.expected_start_time)
    else:
        q = q.where(fr.c.state_type != "SCHEDULED").order_by(fr.c.created.desc())
    return [dict(r) for r in conn.execute(q.limit(limit)).mappings()]


@router.get("/deployments", response_class=HTMLResponse)
def deployments(request: Request) -> Response:
    deps = request.app.state.deployments.read_deployments(limit=500)
    db = request.app.state.db
    with db.read() as conn:
        for d in deps:
            last = _runs(conn, d["id"], upcoming=False, limit=1)
            d["last_run"] = last[0] if last else None
            d["schedule_texts"] = [(describe(s["schedule"]), s["active"]) for s in d["schedules"]]
    return render(request, "deployments.html", "deployments", deployments=deps)


def _deployment_or_404(request: Request, deployment_id: str) -> dict[str, Any] | Response:
    try:
        return request.app.state.deployments.read_deployment(deployment_id)
    except ObjectNotFound as exc:
        return render(request, "missing.html", "deployments", status=404, message=str(exc))


@router.get("/deployments/{deployment_id}", response_class=HTMLResponse)
def deployment(request: Request, deployment_id: str) -> Response:
    dep = _deployment_or_404(request, deployment_id)
    if isinstance(dep, Response):
        return dep
    with request.app.state.db.read() as conn:
        upcoming = _runs(conn, deployment_id, upcoming=True, limit=10)
        recent = _runs(conn, deployment_id, upcoming=False, limit=15)
    schedules = [{**s, "text": describe(s["schedule"]),
                  "next": _next_time(s["schedule"]) if s["active"] and not dep["paused"] else None,
                  "kind": next((k for k in ("cron", "interval", "rrule") if k in s["schedule"]),
                               "cron")}
                 for s in dep["schedules"]]
    return render(request, "deployment.html", "deployments", d=dep, schedules=schedules,
                  upcoming=upcoming, recent=recent, new_schedule=None)


# -- running with custom parameters ------------------------------------------------------------
def _run_fields(dep: dict[str, Any]) -> list[Any]:
    schema = dep.get("parameter_openapi_schema") or {}
    return build_fields(schema, dict(dep.get("parameters") or {}))


@router.get("/deployments/{deployment_id}/run", response_class=HTMLResponse)
def run_form(request: Request, deployment_id: str) -> Response:
    dep = _deployment_or_404(request, deployment_id)
    if isinstance(dep, Response):
        return dep
    return render(request, "deployment_run.html", "deployments", d=dep, fields=_run_fields(dep),
                  error=None)


@router.post("/deployments/{deployment_id}/run", response_class=HTMLResponse)
async def run_submit(request: Request, deployment_id: str) -> Response:
    return await with_form(request, _run_submit, deployment_id)


def _run_submit(request: Request, form: Any, deployment_id: str) -> Response:
    dep = _deployment_or_404(request, deployment_id)
    if isinstance(dep, Response):
        return dep
    fields = _run_fields(dep)
    values, _refs, ok = read_form(fields, form)
    if not ok:
        return render(request, "deployment_run.html", "deployments", status=422, d=dep,
                      fields=fields, error="Some parameters are not valid: see below.")
    try:
        run = request.app.state.deployments.create_flow_run_from_deployment(
            deployment_id, parameters=values)
    except LegatoError as exc:  # ParameterError included: its problems name the fields
        by_field = {f.name: f for f in fields}
        for problem in getattr(exc, "problems", None) or ():
            name = problem.split("'")[1] if problem.count("'") >= 2 else None
            if name in by_field:
                by_field[name].error = problem
        return render(request, "deployment_run.html", "deployments", status=422, d=dep,
                      fields=fields, error=str(exc))
    return back(f"/runs/{run['id']}", notice=f"Flow run {run['name']!r} created: it starts when "
                f"an agent of queue {dep.get('work_queue_name') or 'default'!r} picks it up.")


# -- schedules ---------------------------------------------------------------------------------
def _schedule_from_form(form: Any) -> dict[str, Any]:
    from ...schedules import construct_schedule  # lazy: croniter, dateutil

    kind = str(form.get("kind") or "cron")
    value = str(form.get("value") or "").strip()
    timezone = str(form.get("timezone") or "").strip() or None
    if not value:
        raise ValueError(f"Give the schedule's {kind} "
                         f"({'e.g. 0 6 * * *' if kind == 'cron' else 'in seconds' if kind == 'interval' else 'e.g. FREQ=DAILY;BYHOUR=9'}).")
    if kind == "interval":
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"The interval must be a number of seconds (got {value!r}).") from None
        schedule = construct_schedule(interval=seconds, timezone=timezone)
    elif kind == "rrule":
        schedule = construct_schedule(rrule=value, timezone=timezone)
    elif kind == "cron":
        schedule = construct_schedule(cron=value, timezone=timezone)
    else:
        raise ValueError(f"Unknown schedule kind {kind!r}: choose cron, interval or rrule.")
    return {"schedule": schedule.model_dump(mode="json"), "active": form.get("active") is not None,
            "parameters": {}}


def _keep(s: dict[str, Any]) -> dict[str, Any]:
    return {"schedule": s["schedule"], "active": s["active"], "parameters": s["parameters"],
            "max_scheduled_runs": s.get("max_scheduled_runs")}


@router.post("/deployments/{deployment_id}/schedules")
async def add_schedule(request: Request, deployment_id: str) -> Response:
    return await with_form(request, _add_schedule, deployment_id)


def _add_schedule(request: Request, form: Any, deployment_id: str) -> Response:
    here = f"/deployments/{deployment_id}"
    try:
        dep = request.app.state.deployments.read_deployment(deployment_id)
        new = _schedule_from_form(form)
        request.app.state.deployments.replace_schedules(
            deployment_id, [*map(_keep, dep["schedules"]), new])
    except (LegatoError, ValueError) as exc:
        return back(here, problem=f"Schedule not added: {exc}")
    return back(here, notice=f"Schedule added: {describe(new['schedule'])}.")


@router.post("/deployments/{deployment_id}/schedules/{schedule_id}/edit")
async def edit_schedule(request: Request, deployment_id: str, schedule_id: str) -> Response:
    return await with_form(request, _edit_schedule, deployment_id, schedule_id)


def _edit_schedule(request: Request, form: Any, deployment_id: str, schedule_id: str
                   ) -> Response:
    here = f"/deployments/{deployment_id}"
    try:
        dep = request.app.state.deployments.read_deployment(deployment_id)
        if schedule_id not in {s["id"] for s in dep["schedules"]}:
            raise ObjectNotFound(f"This deployment has no schedule {schedule_id}.")
        new = _schedule_from_form(form)
        specs = [new if s["id"] == schedule_id else _keep(s) for s in dep["schedules"]]
        request.app.state.deployments.replace_schedules(deployment_id, specs)
    except (LegatoError, ValueError) as exc:
        return back(here, problem=f"Schedule not changed: {exc}")
    return back(here, notice=f"Schedule changed: {describe(new['schedule'])}.")


@router.post("/deployments/{deployment_id}/schedules/{schedule_id}/{action}")
def schedule_action(request: Request, deployment_id: str, schedule_id: str,
                    action: str) -> Response:
    here = f"/deployments/{deployment_id}"
    deps = request.app.state.deployments
    try:
        dep = deps.read_deployment(deployment_id)
        if schedule_id not in {s["id"] for s in dep["schedules"]}:
            raise ObjectNotFound(f"This deployment has no schedule {schedule_id}.")
        if action in ("pause", "resume"):
            deps.set_schedules_active(deployment_id, action == "resume", schedule_id)
        elif action == "delete":
            deps.replace_schedules(deployment_id, [_keep(s) for s in dep["schedules"]
                                                   if s["id"] != schedule_id])
        else:
            raise ObjectNotFound(f"Unknown action {action!r}.")
    except LegatoError as exc:
        return back(here, problem=str(exc))
    done = {"pause": "paused: its runs not yet picked up are removed",
            "resume": "resumed", "delete": "deleted"}[action]
    return back(here, notice=f"Schedule {done}.")
