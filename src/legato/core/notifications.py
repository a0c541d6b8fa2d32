"""Flow-run notifications: rules ("when a flow run enters Failed or Crashed, optionally only for
these tags or deployments, send through this notification block") and their deliveries.

The source is the durable record of state changes, the ``flow_run_state`` table, which embedded
runs and the server both write; so runs recorded embedded into the server's database notify
too. :meth:`Notifications.process` does one round of the work (the server's notification
service calls it every ``LEGATO_NOTIFICATIONS_INTERVAL_SECONDS``):

1. **scan**: for each active rule, the flow-run states newer than its cursor (less a safety
   window, for clocks that disagree and rows committed late) that match it become *pending
   deliveries*. A delivery is unique per (rule, state) in the database, so a state is announced
   once per rule however often it is scanned, by however many servers.
2. **send**: each due pending delivery is claimed (one conditional UPDATE: two senders never
   send one delivery at once), its message built and sent with the block's ``notify``; then it
   is ``sent``, or retried later with an exponential backoff, or ``failed`` after
   ``max_attempts``. A sender that dies mid-send leaves the claim to expire: that delivery is
   sent again (at least once, not at most once, in that one case).

Errors recorded on a delivery (``last_error``) and logged never hold the block's secrets: the
notification blocks word their errors without them, and any secret value of the block still
found in an error is masked.
"""

from __future__ import annotations

import datetime as dt
import logging
import string
import uuid
from typing import Any

import sqlalchemy as sa

from .. import states as _states
from ..exceptions import BlockError, ConfigurationError, ObjectNotFound, ParameterError
from ..ids import new_id
from ..store import models
from ..store.database import Database
from .blocks import secret_values
from .orchestrator import _insert_for

log = logging.getLogger("legato.notifications")

#: the state names a rule may name: every state a flow run can enter
STATE_NAMES: tuple[str, ...] = tuple(
    n for n in _states.__all__ if n not in ("StateType", "State", "TERMINAL_TYPES"))
#: what a message template may use
PLACEHOLDERS = ("flow_name", "flow_run_name", "flow_run_id", "state_name", "state_message",
                "flow_run_url")
DEFAULT_TEMPLATE = (
    "Flow run {flow_name}/{flow_run_name} entered state {state_name}.\n"
    "State message: {state_message}\n"
    "Flow run: {flow_run_url}\n"
    "Flow run id: {flow_run_id}"
)
DEFAULT_SUBJECT = "Legato: flow run {flow_name}/{flow_run_name} is {state_name}"
#: a scan looks this far before its cursor again (clock skew, rows committed late)
SCAN_OVERLAP = dt.timedelta(seconds=120)
#: a claimed delivery is the claimer's this long; after it, another sender may try it
CLAIM_SECONDS = 300.0
SEND_BATCH = 50
_MAX_ERROR = 2000
_FIELDS = ("name", "is_active", "state_names", "tags", "deployment_ids", "block_document_id",
           "message_template")

_pol, _del = models.flow_run_notification_policy, models.notification_delivery


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Notifications:
    """Notification rules and their deliveries, over one database. ``blocks`` is the
    :class:`~legato.core.blocks.BlockCore` the notification blocks are read from."""

    def __init__(self, db: Database, blocks: Any, *, build_block: Any = None,
                 max_attempts: int = 5, retry_delay: float = 30.0,
                 max_retry_delay: float = 3600.0) -> None:
        """``build_block`` makes a Block from a stored document (the blocks layer's
        ``block_from_document``: the core does not import the layer above it); without it
        deliveries cannot be sent."""
        self.db = db
        self.blocks = blocks
        self.build_block = build_block
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay

    # -- rules -------------------------------------------------------------------------------------
    def create_policy(self, *, state_names: Any, block_document_id: str, tags: Any = (),
                      deployment_ids: Any = (), name: str | None = None, is_active: bool = True,
                      message_template: str | None = None) -> dict[str, Any]:
        """A new rule; only state changes from now on notify. Bad input raises (naming it) and
        stores nothing."""
        values = {"name": _name(name), "is_active": _bool("is_active", is_active),
                  "state_names": _state_names(state_names), "tags": _tags(tags),
                  "deployment_ids": _ids("deployment_ids", deployment_ids),
                  "message_template": _template(message_template)}
        now = _now()
        pid = new_id()
        with self.db.write() as conn:
            _check_block(conn, block_document_id)
            _check_deployments(conn, values["deployment_ids"])
            conn.execute(_pol.insert().values(
                id=pid, block_document_id=block_document_id, active_since=now,
                scanned_until=None, created=now, updated=now, **values))
            return _policy(conn, pid)

    def read_policies(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(
                _policy_query().order_by(_pol.c.created, _pol.c.id)).mappings()]

    def read_policy(self, policy_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            return _policy(conn, policy_id)

    def update_policy(self, policy_id: str, **fields: Any) -> dict[str, Any]:
        """Change some fields of a rule. A rule turned back on, or whose states, tags or
        deployments change, applies to state changes from now on."""
        unknown = sorted(set(fields) - set(_FIELDS))
        if unknown:
            raise ParameterError(
                f"Unknown field(s) of a notification policy: {', '.join(unknown)}; the fields "
                f"are {', '.join(_FIELDS)}. Nothing was changed.")
        checks = {"name": _name, "is_active": lambda v: _bool("is_active", v),
                  "state_names": _state_names, "tags": _tags,
                  "deployment_ids": lambda v: _ids("deployment_ids", v),
                  "message_template": _template, "block_document_id": lambda v: v}
        values = {k: checks[k](v) for k, v in fields.items()}
        now = _now()
        with self.db.write() as conn:
            row = _policy(conn, policy_id)
            if "block_document_id" in values:
                _check_block(conn, values["block_document_id"])
            if "deployment_ids" in values:
                _check_deployments(conn, values["deployment_ids"])
            renewed = (values.get("is_active") is True and not row["is_active"]) or any(
                k in values and values[k] != row[k]
                for k in ("state_names", "tags", "deployment_ids"))
            if renewed:
                values["active_since"] = now
            conn.execute(_pol.update().where(_pol.c.id == policy_id).values(updated=now, **values))
            return _policy(conn, policy_id)

    def delete_policy(self, policy_id: str) -> None:
        """Delete a rule and its deliveries' records."""
        with self.db.write() as conn:
            _policy(conn, policy_id)
            conn.execute(_del.delete().where(_del.c.policy_id == policy_id))
            conn.execute(_pol.delete().where(_pol.c.id == policy_id))

    # -- deliveries --------------------------------------------------------------------------------
    def read_deliveries(self, policy_id: str | None = None, status: str | None = None,
                        limit: int = 50) -> list[dict[str, Any]]:
        """Deliveries, newest first, with their flow run's and flow's names."""
        if status is not None and status not in ("pending", "sent", "failed"):
            raise ParameterError(
                f"Unknown delivery status {status!r}: use pending, sent or failed.")
        fr, fl = models.flow_run, models.flow
        query = (sa.select(_del, fr.c.name.label("flow_run_name"), fl.c.name.label("flow_name"))
                 .select_from(_del.outerjoin(fr, fr.c.id == _del.c.flow_run_id)
                              .outerjoin(fl, fl.c.id == fr.c.flow_id))
                 .order_by(_del.c.created.desc(), _del.c.id.desc()).limit(max(1, int(limit))))
        if policy_id is not None:
            query = query.where(_del.c.policy_id == policy_id)
        if status is not None:
            query = query.where(_del.c.status == status)
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # -- the work ----------------------------------------------------------------------------------
    def process(self, ui_url: str, now: dt.datetime | None = None) -> dict[str, int]:
        """One round: queue the deliveries of new matching states, then send the due ones.
        ``ui_url`` is the web UI's address (the link to a run is ``{ui_url}/runs/{id}``)."""
        now = now or _now()
        queued = self.scan(now)
        out = self.send_due(ui_url, now)
        return {"queued": queued, **out}

    def scan(self, now: dt.datetime | None = None) -> int:
        """Queue a pending delivery for every new flow-run state matching an active rule."""
        now = now or _now()
        frs, fr = models.flow_run_state, models.flow_run
        queued = 0
        with self.db.read() as conn:  # most ticks of a server without policies stop here
            if conn.execute(sa.select(_pol.c.id).where(_pol.c.is_active.is_(True)).limit(1)
                            ).first() is None:
                return 0
        with self.db.write() as conn:
            insert = _insert_for(conn.dialect.name)
            policies = conn.execute(sa.select(_pol).where(_pol.c.is_active.is_(True))
                                    ).mappings().all()
            for p in policies:
                lower = p["active_since"]
                if p["scanned_until"] is not None:
                    lower = max(lower, p["scanned_until"] - SCAN_OVERLAP)
                done = sa.exists().where(_del.c.policy_id == p["id"],
                                         _del.c.flow_run_state_id == frs.c.id)
                query = (sa.select(frs.c.id, frs.c.flow_run_id, frs.c.name, fr.c.tags)
                         .select_from(frs.join(fr, fr.c.id == frs.c.flow_run_id))
                         .where(frs.c.timestamp >= lower, frs.c.name.in_(p["state_names"]),
                                ~done))
                if p["deployment_ids"]:
                    query = query.where(fr.c.deployment_id.in_(p["deployment_ids"]))
                wanted = set(p["tags"])
                rows = [{"id": new_id(), "policy_id": p["id"], "flow_run_id": r.flow_run_id,
                         "flow_run_state_id": r.id, "state_name": r.name, "status": "pending",
                         "attempts": 0, "next_attempt": now, "created": now}
                        for r in conn.execute(query)
                        if not wanted or wanted & set(r.tags or ())]
                for row in rows:
                    queued += len(conn.execute(insert(_del).values(**row).on_conflict_do_nothing(
                        index_elements=["policy_id", "flow_run_state_id"]
                    ).returning(_del.c.id)).all())
                conn.execute(_pol.update().where(_pol.c.id == p["id"]).values(scanned_until=now))
        return queued

    def send_due(self, ui_url: str, now: dt.datetime | None = None) -> dict[str, int]:
        """Send the pending deliveries that are due (at most ``SEND_BATCH`` a round)."""
        now = now or _now()
        counts = {"sent": 0, "retrying": 0, "failed": 0}
        with self.db.read() as conn:
            due = conn.execute(
                sa.select(_del.c.id, _del.c.attempts)
                .where(_del.c.status == "pending", _del.c.next_attempt <= now)
                .order_by(_del.c.next_attempt, _del.c.id).limit(SEND_BATCH)).all()
        for delivery_id, attempts in due:
            outcome = self._send_one(delivery_id, attempts, ui_url, now)
            if outcome is not None:
                counts[outcome] += 1
        return counts

    def _send_one(self, delivery_id: str, attempts: int, ui_url: str, now: dt.datetime
                  ) -> str | None:
        lease = now + dt.timedelta(seconds=CLAIM_SECONDS)
        with self.db.write() as conn:
            claimed = conn.execute(_del.update().where(
                _del.c.id == delivery_id, _del.c.status == "pending",
                _del.c.attempts == attempts, _del.c.next_attempt <= now,
            ).values(attempts=attempts + 1, next_attempt=lease)).rowcount
            if not claimed:
                return None  # another sender has it
            info = _message_info(conn, delivery_id)
        attempt = attempts + 1
        secrets: list[str] = []
        try:
            if info["flow_run_name"] is None:
                raise _Gone("the flow run no longer exists (deleted), so there is nothing to "
                            "announce")
            doc = self._block_document(info["block_document_id"])
            secrets = _secret_values(doc)
            block = _block(doc, self.build_block)
            values = _values(info, ui_url)
            body = (info["message_template"] or DEFAULT_TEMPLATE).format_map(values)
            block.notify(body, DEFAULT_SUBJECT.format_map(values))
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the delivery
            error = _scrub(str(exc) if isinstance(exc, (BlockError, _Gone)) else
                           f"{type(exc).__name__}: {exc}", secrets)[:_MAX_ERROR]
            final = isinstance(exc, _Gone) or attempt >= self.max_attempts
            delay = min(self.retry_delay * 2 ** (attempt - 1), self.max_retry_delay)
            with self.db.write() as conn:
                conn.execute(_del.update().where(_del.c.id == delivery_id).values(
                    status="failed" if final else "pending", last_error=error,
                    next_attempt=None if final else now + dt.timedelta(seconds=delay)))
            log.warning("Notification %s (policy %s, flow run %s, %s) %s after attempt %d: %s",
                        delivery_id, info["policy_id"], info["flow_run_id"], info["state_name"],
                        "failed" if final else f"will be retried in {delay:g} s", attempt, error)
            return "failed" if final else "retrying"
        with self.db.write() as conn:
            conn.execute(_del.update().where(_del.c.id == delivery_id).values(
                status="sent", sent_at=now, next_attempt=None))
        return "sent"

    def _block_document(self, doc_id: str) -> dict[str, Any]:
        try:
            return self.blocks.read_block_document_by_id(doc_id, include_secrets=True)
        except ObjectNotFound:
            raise BlockError(
                f"The policy's notification block (id {doc_id}) was deleted; point the policy "
                "at another block.") from None


class _Gone(Exception):
    """A delivery that can never be sent (its flow run was deleted)."""


# -- validation ------------------------------------------------------------------------------------
def _state_names(value: Any) -> list[str]:
    names = _str_list("state_names", value)
    if not names:
        raise ParameterError(
            f"state_names is empty: name the flow-run states that notify (e.g. ['Failed', "
            f"'Crashed']); the states are {', '.join(STATE_NAMES)}. Nothing was saved.")
    unknown = [n for n in names if n not in STATE_NAMES]
    if unknown:
        raise ParameterError(
            f"Unknown state name(s) in state_names: {', '.join(map(repr, unknown))}; the "
            f"flow-run states are {', '.join(STATE_NAMES)} (names are case-sensitive). "
            "Nothing was saved.")
    return names


def _tags(value: Any) -> list[str]:
    tags = _str_list("tags", value)
    if any(not t or len(t) > 255 for t in tags):
        raise ParameterError("tags must be non-empty strings of at most 255 characters. "
                             "Nothing was saved.")
    return tags


def _ids(field: str, value: Any) -> list[str]:
    ids = _str_list(field, value)
    for v in ids:
        try:
            uuid.UUID(v)
        except ValueError:
            raise ParameterError(f"{field} holds {v!r}, which is not an id (a UUID). "
                                 "Nothing was saved.") from None
    return [v.lower() for v in ids]


def _str_list(field: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise ParameterError(f"{field} must be a list of strings, not {type(value).__name__} "
                             f"{value!r}. Nothing was saved.")
    bad = [v for v in value if not isinstance(v, str)]
    if bad:
        raise ParameterError(f"{field} must hold strings only; it holds {bad[0]!r}. "
                             "Nothing was saved.")
    return list(dict.fromkeys(value))  # no duplicates, order kept


def _name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 255:
        raise ParameterError("name must be a string of at most 255 characters. Nothing was saved.")
    return value


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ParameterError(f"{field} must be true or false, not {value!r}. Nothing was saved.")
    return value


def _template(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(
            "message_template must be non-empty text (leave it out for the default message). "
            "Nothing was saved.")
    known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as exc:
        raise ParameterError(
            f"message_template is not a valid template ({exc}); placeholders are {known}, and "
            "literal braces are written {{ and }}. Nothing was saved.") from None
    unknown = [f for f in fields if f not in PLACEHOLDERS]
    if unknown:
        raise ParameterError(
            f"message_template uses {', '.join('{' + f + '}' for f in unknown)}, which is not a "
            f"placeholder; the placeholders are {known} (literal braces: {{{{ and }}}}). "
            "Nothing was saved.")
    return value


def _check_block(conn: sa.Connection, doc_id: Any) -> None:
    bd, bs, bt = models.block_document, models.block_schema, models.block_type
    try:
        uuid.UUID(str(doc_id))
    except ValueError:
        raise ParameterError(f"block_document_id {doc_id!r} is not an id (a UUID). "
                             "Nothing was saved.") from None
    row = conn.execute(
        sa.select(bd.c.name, bt.c.slug, bs.c.capabilities)
        .select_from(bd.join(bs, bs.c.id == bd.c.block_schema_id)
                     .join(bt, bt.c.id == bd.c.block_type_id))
        .where(bd.c.id == str(doc_id))).first()
    if row is None:
        raise ObjectNotFound(
            f"No block with id {doc_id} (block_document_id): save the notification block "
            "first (e.g. SlackWebhook(url=...).save('alerts')) and use its id. "
            "Nothing was saved.")
    if "notify" not in (row.capabilities or []):
        raise BlockError(
            f"The block {row.slug}/{row.name} cannot send notifications (its type has no "
            "notify method); use a notification block: Slack, Microsoft Teams, custom web hook, "
            "apprise or email. Nothing was saved.")


def _check_deployments(conn: sa.Connection, ids: list[str]) -> None:
    if not ids:
        return
    dep = models.deployment
    found = set(conn.execute(sa.select(dep.c.id).where(dep.c.id.in_(ids))).scalars())
    missing = [i for i in ids if i not in {str(f).lower() for f in found}]
    if missing:
        raise ObjectNotFound(f"No deployment with id {', '.join(missing)} (deployment_ids). "
                             "Nothing was saved.")


# -- answers and messages --------------------------------------------------------------------------
def _policy_query() -> sa.Select:
    bd, bt = models.block_document, models.block_type
    return (sa.select(_pol, bd.c.name.label("block_document_name"),
                      bt.c.slug.label("block_type_slug"))
            .select_from(_pol.outerjoin(bd, bd.c.id == _pol.c.block_document_id)
                         .outerjoin(bt, bt.c.id == bd.c.block_type_id)))


def _policy(conn: sa.Connection, policy_id: str) -> dict[str, Any]:
    row = conn.execute(_policy_query().where(_pol.c.id == policy_id)).mappings().first()
    if row is None:
        raise ObjectNotFound(f"No notification policy with id {policy_id}.")
    return dict(row)


def _message_info(conn: sa.Connection, delivery_id: str) -> dict[str, Any]:
    frs, fr, fl = models.flow_run_state, models.flow_run, models.flow
    row = conn.execute(
        sa.select(_del.c.policy_id, _del.c.flow_run_id, _del.c.state_name,
                  _pol.c.block_document_id, _pol.c.message_template,
                  fr.c.name.label("flow_run_name"), fl.c.name.label("flow_name"),
                  frs.c.message.label("state_message"))
        .select_from(_del.join(_pol, _pol.c.id == _del.c.policy_id)
                     .outerjoin(fr, fr.c.id == _del.c.flow_run_id)
                     .outerjoin(fl, fl.c.id == fr.c.flow_id)
                     .outerjoin(frs, frs.c.id == _del.c.flow_run_state_id))
        .where(_del.c.id == delivery_id)).mappings().one()
    return dict(row)


def _values(info: dict[str, Any], ui_url: str) -> dict[str, str]:
    run_id = str(info["flow_run_id"])
    return {"flow_name": info["flow_name"] or "(unknown flow)",
            "flow_run_name": info["flow_run_name"], "flow_run_id": run_id,
            "state_name": info["state_name"],
            "state_message": info["state_message"] or "(none)",
            "flow_run_url": f"{ui_url.rstrip('/')}/runs/{run_id}"}


def _block(doc: dict[str, Any], build_block: Any) -> Any:
    if build_block is None:
        raise ConfigurationError("Notifications were made without a block builder: pass "
                                 "build_block=legato.blocks.core.block_from_document.")
    block = build_block(doc)
    if not callable(getattr(block, "notify", None)):
        raise BlockError(f"The block {doc['block_type']['slug']}/{doc['name']} cannot send "
                         "notifications (no notify method).")
    return block


def _secret_values(doc: dict[str, Any]) -> list[str]:
    """Every secret value of a document (and the documents it references), as text."""
    paths = ((doc.get("block_schema") or {}).get("fields") or {}).get("secret_fields") or []
    out = secret_values(doc.get("data") or {}, paths)
    for nested in (doc.get("references") or {}).values():
        out += _secret_values(nested)
    return [s for s in out if len(s) >= 4]


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "****")
    return text
