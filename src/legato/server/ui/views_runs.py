"""The dashboard, the flow-run list, a run's page (states, task timeline and graph, subflows,
logs with a live tail) and its Retry / Cancel actions, and the flows."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ...exceptions import LegatoError, ObjectNotFound
from ...store import models
from . import back, data, render
from .graph import dependency_graph, timeline, upstream_ids

router = APIRouter()

STATE_NAMES = ["Scheduled", "Late", "AwaitingRetry", "Pending", "Running", "Retrying",
               "Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelling", "Cancelled",
               "Paused"]
WINDOWS = {"1h": 1, "24h": 24, "7d": 24 * 7, "30d": 24 * 30}
# the dashboard counts every run of its window (a week is ~80,000 runs at a million in 90 days)
CHART_WINDOWS = {k: WINDOWS[k] for k in ("1h", "24h", "7d")}
LEVELS = {"all": 0, "debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, window: str = "24h") -> Response:
    if window not in CHART_WINDOWS:
        window = "24h"
    hours = WINDOWS[window]
    board = data.dashboard(request.app.state.db, hours=hours)
    peak = max((sum(b["counts"].values()) for b in board["chart"]), default=0)
    return render(request, "dashboard.html", "dashboard", board=board, peak=peak,
                  window=window, windows=CHART_WINDOWS,
                  now=dt.datetime.now(dt.timezone.utc))


def _filter_from(request: Request) -> tuple[data.RunFilter, dict[str, Any]]:
    q = request.query_params
    window = q.get("window", "")
    since = None
    if window in WINDOWS:
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=WINDOWS[window])
    tags = [t.strip() for t in q.get("tags", "").split(",") if t.strip()]
    flt = data.RunFilter(flow=q.get("flow") or None, deployment=q.get("deployment") or None,
                         states=[s for s in q.getlist("state") if s in STATE_NAMES],
                         tags=tags, search=q.get("search") or None, since=since,
                         before=q.get("before") or None)
    form = {"flow": flt.flow or "", "deployment": flt.deployment or "", "states": flt.states,
            "tags": ", ".join(tags), "search": flt.search or "", "window": window}
    return flt, form


@router.get("/runs", response_class=HTMLResponse)
def runs(request: Request) -> Response:
    flt, form = _filter_from(request)
    try:
        page = data.flow_runs(request.app.state.db, flt)
    except ValueError as exc:
        return render(request, "runs.html", "runs", status=422, page=None, form=form,
                      states=STATE_NAMES, windows=WINDOWS, error=str(exc), next_url=None)
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "before"]
    next_url = f"/runs?{urlencode([*kept, ('before', page['next'])])}" if page["next"] else None
    return render(request, "runs.html", "runs", page=page, form=form, states=STATE_NAMES,
                  windows=WINDOWS, error=None, next_url=next_url,
                  first_url=f"/runs?{urlencode(kept)}")


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run(request: Request, run_id: str, tab: str = "logs") -> Response:
    db = request.app.state.db
    try:
        info = data.run_page(db, run_id)
    except ObjectNotFound as exc:
        return render(request, "missing.html", "runs", status=404, message=str(exc))
    logs = data.run_logs(db, run_id)
    upstream_of = {}
    names = {t["id"]: t["name"] for t in info["tasks"]}
    for t in info["tasks"]:
        upstream_of[t["id"]] = [names[u] for u in upstream_ids(t) if u in names]
    return render(request, "run.html", "runs", **info, logs=logs, levels=LEVELS,
                  timeline=timeline(info["tasks"], info["run"]),
                  graph=dependency_graph(info["tasks"]), upstream_of=upstream_of,
                  live=info["run"]["state_type"] in ("SCHEDULED", "PENDING", "RUNNING",
                                                     "CANCELLING", "PAUSED"),
                  tab=tab)


@router.get("/runs/{run_id}/logs", response_class=HTMLResponse)
def run_logs(request: Request, run_id: str, level: str = "all", search: str = "",
             after: str = "") -> Response:
    """The log lines after a cursor, as HTML rows (the live tail, the filter and "more")."""
    db = request.app.state.db
    try:
        logs = data.run_logs(db, run_id, min_level=LEVELS.get(level, 0),
                             search=search or None, after=after or None)
    except ValueError as exc:
        return Response(str(exc), status_code=422)
    state = db_state(db, run_id)
    env = request.app.state.ui_env
    html = env.get_template("_log_rows.html").render(logs=logs["logs"])
    return HTMLResponse(html, headers={
        "X-Log-Cursor": logs["cursor"] or "", "X-Log-More": "1" if logs["more"] else "0",
        "X-Run-State": state.get("state_type") or "", "X-Run-State-Name":
        state.get("state_name") or "", "Cache-Control": "no-store"})


def db_state(db: Any, run_id: str) -> dict[str, Any]:
    fr = models.flow_run
    with db.read() as conn:
        row = conn.execute(sa.select(fr.c.state_type, fr.c.state_name).where(
            fr.c.id == run_id)).mappings().first()
    return dict(row) if row else {}


@router.get("/runs/{run_id}/state")
def run_state(request: Request, run_id: str) -> Response:
    state = db_state(request.app.state.db, run_id)
    if not state:
        return JSONResponse({"detail": f"No flow run with id {run_id}."}, status_code=404)
    return JSONResponse(state, headers={"Cache-Control": "no-store"})


@router.post("/runs/{run_id}/cancel")
def cancel(request: Request, run_id: str) -> Response:
    try:
        out = request.app.state.deployments.cancel_flow_run(run_id)
    except LegatoError as exc:
        return back(f"/runs/{run_id}", problem=str(exc))
    if out["status"] == "REJECT":
        return back(f"/runs/{run_id}", problem=f"Not cancelled: {out['reason']}.")
    return back(f"/runs/{run_id}", notice="Cancellation requested.")


@router.post("/runs/{run_id}/retry")
def retry(request: Request, run_id: str) -> Response:
    try:
        out = request.app.state.deployments.retry_flow_run(run_id)
    except LegatoError as exc:
        return back(f"/runs/{run_id}", problem=str(exc))
    if out["status"] != "ACCEPT":
        return back(f"/runs/{run_id}", problem=f"Not retried: {out['reason']}.")
    return back(f"/runs/{run_id}", notice="A new attempt is scheduled; an agent will pick it up.")


@router.get("/flows", response_class=HTMLResponse)
def flows(request: Request) -> Response:
    f, fr, d = models.flow, models.flow_run, models.deployment
    db = request.app.state.db
    with db.read() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(f).order_by(f.c.name).limit(500))
                .mappings()]
        deps = [dict(r) for r in conn.execute(sa.select(d.c.id, d.c.name, d.c.flow_id))
                .mappings()]
        for row in rows:  # the newest run of each flow (one indexed lookup a flow)
            last = conn.execute(
                sa.select(fr.c.id, fr.c.name, fr.c.state_type, fr.c.state_name, fr.c.created)
                .where(fr.c.flow_id == row["id"]).order_by(fr.c.created.desc()).limit(1)
            ).mappings().first()
            row["last_run"] = dict(last) if last else None
            row["deployments"] = [x for x in deps if x["flow_id"] == row["id"]]
    return render(request, "flows.html", "flows", flows=rows)
