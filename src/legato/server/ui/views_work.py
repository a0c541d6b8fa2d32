"""Work pools and queues (with their workers and waiting runs), tag concurrency limits (with the
task runs holding their slots) and flow-run notification rules (with their recent deliveries):
the pages and their actions."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ...exceptions import LegatoError
from ...store import models
from . import back, data, render, with_form

router = APIRouter()

POOL_TYPES = ("process", "docker", "kubernetes")
MAX_LIMIT = 1_000_000
fr = models.flow_run


class BadInput(ValueError):
    """A form field the page refuses before anything reaches the store."""


# -- reading form fields ------------------------------------------------------------------------------
def _text(form: Any, key: str, label: str, *, required: bool = True) -> str:
    value = str(form.get(key) or "").strip()
    if required and not value:
        raise BadInput(f"{label} is empty: give it a value.")
    if len(value) > 255:
        raise BadInput(f"{label} is {len(value)} characters long; at most 255 are allowed.")
    if "\x00" in value:
        raise BadInput(f"{label} holds a NUL character; remove it.")
    return value


def _int(form: Any, key: str, label: str, *, low: int, optional: bool) -> int | None:
    raw = str(form.get(key) or "").strip()
    if not raw:
        if optional:
            return None
        raise BadInput(f"{label} is empty: give a whole number of at least {low}.")
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"{label} must be a whole number, not {raw!r}.") from None
    if not low <= value <= MAX_LIMIT:
        raise BadInput(f"{label} must be between {low} and {MAX_LIMIT:,}; {value} is not.")
    return value


def _act(path: str, action: Any) -> Response:
    """Run an action that answers what it did; its refusal (bad input, or the core's error) is
    the page's problem line, and nothing is stored."""
    try:
        done = action()
    except (BadInput, LegatoError) as exc:
        return back(path, problem=str(exc))
    return back(path, notice=done)


# -- work pools and queues ------------------------------------------------------------------------------
def _waiting(conn: sa.Connection) -> dict[str, dict[str, int]]:
    """Per queue: its Scheduled runs, those due now, and those marked Late (one grouped query)."""
    now = dt.datetime.now(dt.timezone.utc)
    due = sa.func.sum(sa.case((fr.c.expected_start_time <= now, 1), else_=0))
    late = sa.func.sum(sa.case((fr.c.state_name == "Late", 1), else_=0))
    rows = conn.execute(
        sa.select(fr.c.work_queue_id, sa.func.count(), due, late)
        .where(fr.c.work_queue_id.is_not(None), fr.c.state_type == "SCHEDULED")
        .group_by(fr.c.work_queue_id)).all()
    return {str(q): {"scheduled": int(n), "due": int(d or 0), "late": int(lt or 0)}
            for q, n, d, lt in rows}


@router.get("/work-pools", response_class=HTMLResponse)
def work_pools(request: Request) -> Response:
    with request.app.state.db.read() as conn:
        pools = data.work_queues(conn)
        waiting = _waiting(conn)
    none = {"scheduled": 0, "due": 0, "late": 0}
    for pool in pools:
        for q in pool["queues"]:
            q["waiting"] = waiting.get(str(q["id"]), none)
    return render(request, "work_pools.html", "work", pools=pools, pool_types=POOL_TYPES,
                  now=dt.datetime.now(dt.timezone.utc))


@router.post("/work-pools/new")
async def create_pool(request: Request) -> Response:
    return await with_form(request, _create_pool)


def _create_pool(request: Request, form: Any) -> Response:
    def create() -> str:
        name = _text(form, "name", "The pool's name")
        kind = str(form.get("type") or "")
        if kind not in POOL_TYPES:
            raise BadInput(f"Unknown pool type {kind!r}: choose {', '.join(POOL_TYPES)}.")
        limit = _int(form, "concurrency_limit", "The pool's concurrency limit", low=0,
                     optional=True)
        request.app.state.deployments.create_work_pool(name, kind, concurrency_limit=limit)
        return f"Work pool {name} created."

    return _act("/work-pools", create)


@router.post("/work-pools/queues/new")
async def create_queue(request: Request) -> Response:
    return await with_form(request, _create_queue)


def _create_queue(request: Request, form: Any) -> Response:
    def create() -> str:
        name = _text(form, "name", "The queue's name")
        pool = _text(form, "pool", "The pool", required=False) or None
        priority = _int(form, "priority", "The queue's priority", low=1, optional=True) or 1
        limit = _int(form, "concurrency_limit", "The queue's concurrency limit", low=0,
                     optional=True)
        made = request.app.state.deployments.create_work_queue(
            name, pool, priority=priority, concurrency_limit=limit)
        return f"Work queue {made.get('work_pool_name') or pool or ''}/{name} created."

    return _act("/work-pools", create)


def _update(request: Request, form: Any, **fields: Any) -> str:
    """Update the pool ``pool`` or, when the form names one, its queue ``queue``; the answer
    says which."""
    d = request.app.state.deployments
    pool = _text(form, "pool", "The pool")
    queue = _text(form, "queue", "The queue", required=False)
    if queue:
        d.update_work_queue(queue, pool, **fields)
        return f"Work queue {pool}/{queue}"
    d.update_work_pool(pool, **fields)
    return f"Work pool {pool}"


@router.post("/work-pools/pause")
async def pause(request: Request) -> Response:
    return await with_form(request, _pause)


def _pause(request: Request, form: Any) -> Response:
    paused = form.get("paused") == "true"
    return _act("/work-pools", lambda: _update(request, form, is_paused=paused)
                + (" paused." if paused else " resumed."))


@router.post("/work-pools/limit")
async def set_limit(request: Request) -> Response:
    return await with_form(request, _set_limit)


def _set_limit(request: Request, form: Any) -> Response:
    def change() -> str:
        limit = None
        if form.get("action") != "clear":
            limit = _int(form, "concurrency_limit", "The concurrency limit", low=0,
                         optional=False)
        what = "no concurrency limit" if limit is None else f"a concurrency limit of {limit}"
        return f"{_update(request, form, concurrency_limit=limit)} now has {what}."

    return _act("/work-pools", change)


@router.post("/work-pools/delete")
async def delete_pool_or_queue(request: Request) -> Response:
    return await with_form(request, _delete)


def _delete(request: Request, form: Any) -> Response:
    d = request.app.state.deployments

    def delete() -> str:
        pool = _text(form, "pool", "The pool")
        queue = _text(form, "queue", "The queue", required=False)
        if queue:
            d.delete_work_queue(queue, pool)
            return f"Work queue {pool}/{queue} deleted."
        d.delete_work_pool(pool)
        return f"Work pool {pool} deleted, with its queues."

    return _act("/work-pools", delete)


# -- tag concurrency limits -------------------------------------------------------------------------------
@router.get("/concurrency", response_class=HTMLResponse)
def concurrency(request: Request) -> Response:
    limits = request.app.state.core.read_concurrency_limits(limit=1000)
    slot_ids = sorted({s for row in limits for s in row.get("active_slots") or []})
    holders: dict[str, dict[str, Any]] = {}
    if slot_ids:
        tr = models.task_run
        with request.app.state.db.read() as conn:
            for chunk in range(0, len(slot_ids), 500):
                holders.update({str(r["id"]): {**r, "missing": False} for r in conn.execute(
                    sa.select(tr.c.id, tr.c.name, tr.c.flow_run_id, tr.c.state_type,
                              tr.c.state_name, tr.c.start_time)
                    .where(tr.c.id.in_(slot_ids[chunk:chunk + 500]))).mappings()})
    for row in limits:
        row["holders"] = [holders.get(str(s), {"id": s, "missing": True})
                          for s in row.get("active_slots") or []]
    return render(request, "concurrency.html", "concurrency", limits=limits)


@router.post("/concurrency")
async def set_tag_limit(request: Request) -> Response:
    return await with_form(request, _set_tag_limit)


def _set_tag_limit(request: Request, form: Any) -> Response:
    def change() -> str:
        tag = _text(form, "tag", "The tag")
        limit = _int(form, "concurrency_limit", "The limit", low=0, optional=False)
        request.app.state.core.set_concurrency_limit(tag, limit)
        return (f"Tag {tag}: at most {limit} task run{'s' if limit != 1 else ''} Running at "
                "once.")

    return _act("/concurrency", change)


@router.post("/concurrency/{action}")
async def tag_limit_action(request: Request, action: str) -> Response:
    return await with_form(request, _tag_limit_action, action)


def _tag_limit_action(request: Request, form: Any, action: str) -> Response:
    core = request.app.state.core
    tag = str(form.get("tag") or "")

    def reset() -> str:
        core.reset_concurrency_limit(tag)
        return f"Every slot of tag {tag} was freed."

    def delete() -> str:
        core.delete_concurrency_limit(tag)
        return f"The limit of tag {tag} was deleted: its task runs are no longer limited."

    if action in ("reset", "delete"):
        return _act("/concurrency", reset if action == "reset" else delete)
    return back("/concurrency", problem=f"Unknown action {action!r}: use reset or delete.")


# -- notification rules ------------------------------------------------------------------------------------
def _notifications(request: Request) -> Any:
    from ..api.notifications import get_notifications  # one instance for the API and the UI

    return get_notifications(request)


def _notify_blocks(conn: sa.Connection) -> list[dict[str, Any]]:
    """The saved blocks that can send a notification (their type's schema has ``notify``)."""
    bd, bs, bt = models.block_document, models.block_schema, models.block_type
    rows = conn.execute(
        sa.select(bd.c.id, bd.c.name, bt.c.slug, bt.c.name.label("type_name"), bs.c.capabilities)
        .select_from(bd.join(bs, bs.c.id == bd.c.block_schema_id)
                     .join(bt, bt.c.id == bd.c.block_type_id))
        .where(bd.c.is_anonymous.is_(False)).order_by(bt.c.slug, bd.c.name)).mappings().all()
    return [dict(r) for r in rows if "notify" in (r["capabilities"] or [])]


def _deployment_names(conn: sa.Connection) -> dict[str, str]:
    d, f = models.deployment, models.flow
    rows = conn.execute(sa.select(d.c.id, f.c.name, d.c.name).join(f, f.c.id == d.c.flow_id)
                        .order_by(f.c.name, d.c.name).limit(1000)).all()
    return {str(i): f"{flow}/{name}" for i, flow, name in rows}


def _notifications_page(request: Request, status: int = 200, problem: str | None = None,
                        form: dict[str, Any] | None = None) -> Response:
    from ...core.notifications import PLACEHOLDERS, STATE_NAMES  # the rules' own vocabulary

    n = _notifications(request)
    policies = n.read_policies()
    deliveries = n.read_deliveries(limit=50)
    with request.app.state.db.read() as conn:
        blocks = _notify_blocks(conn)
        deployments = _deployment_names(conn)
    names = {p["id"]: p["name"] or ", ".join(p["state_names"]) for p in policies}
    for d in deliveries:
        d["policy_label"] = names.get(d["policy_id"], "?")
    extra = {"problem": problem} if problem else {}
    return render(request, "notifications.html", "notifications", status=status,
                  policies=policies, deliveries=deliveries, blocks=blocks,
                  deployments=deployments, state_names=STATE_NAMES, placeholders=PLACEHOLDERS,
                  now=dt.datetime.now(dt.timezone.utc),
                  form=form or {"states": ["Failed", "Crashed"], "tags": "", "deployments": [],
                                "block": "", "name": "", "template": ""}, **extra)


@router.get("/notifications", response_class=HTMLResponse)
def notifications(request: Request) -> Response:
    return _notifications_page(request)


@router.post("/notifications", response_class=HTMLResponse)
async def create_rule(request: Request) -> Response:
    return await with_form(request, _create_rule)


def _create_rule(request: Request, form: Any) -> Response:
    values = {"states": form.getlist("state"), "tags": str(form.get("tags") or ""),
              "deployments": form.getlist("deployment"), "block": str(form.get("block") or ""),
              "name": str(form.get("name") or "").strip(),
              "template": str(form.get("template") or "")}
    try:
        if not values["states"]:
            raise BadInput("Choose at least one state: a rule notifies when a flow run "
                           "enters one of its states. Nothing was saved.")
        if not values["block"]:
            raise BadInput("Choose the notification block the messages are sent with. "
                           "Nothing was saved.")
        _notifications(request).create_policy(
            state_names=values["states"], block_document_id=values["block"],
            tags=[t.strip() for t in values["tags"].split(",") if t.strip()],
            deployment_ids=values["deployments"], name=values["name"] or None,
            message_template=values["template"] if values["template"].strip() else None)
    except (BadInput, LegatoError) as exc:
        return _notifications_page(request, 422, str(exc), values)
    return back("/notifications", notice="Notification rule created: state changes from now "
                                          "on are announced.")


@router.post("/notifications/{policy_id}/{action}")
async def rule_action(request: Request, policy_id: str, action: str) -> Response:
    return await with_form(request, _rule_action, policy_id, action)


def _rule_action(request: Request, form: Any, policy_id: str, action: str) -> Response:
    n = _notifications(request)

    def switch() -> str:
        on = action == "enable"
        n.update_policy(policy_id, is_active=on)
        return ("Rule turned on: state changes from now on are announced." if on
                else "Rule turned off.")

    def delete() -> str:
        n.delete_policy(policy_id)
        return "Rule deleted, with its deliveries' records."

    try:
        uuid.UUID(policy_id)
    except ValueError:
        return back("/notifications", problem=f"{policy_id!r} is not a rule's id.")
    if action in ("enable", "disable", "delete"):
        return _act("/notifications", delete if action == "delete" else switch)
    return back("/notifications", problem=f"Unknown action {action!r}: use enable, disable "
                                          "or delete.")
