"""The ``Deployment`` object (Prefect 2's), its YAML file, and turning schedule options into
stored schedules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..blocks.core import Block, block_from_document
from ..client.factory import get_client
from ..exceptions import BlockError, LegatoError
from ..ids import new_id
from ..schedules import construct_schedule, schedule_from_dict
from ..utilities.entrypoints import flow_entrypoint_of, load_flow_from_entrypoint
from ..utilities.parameter_schema import parameter_schema


class DeploymentError(LegatoError):
    """A deployment could not be built or applied as asked (the message says why)."""


def schedules_from_options(*, cron: str | None = None, interval: Any = None,
                           rrule: str | None = None, timezone: str | None = None,
                           anchor_date: Any = None, schedule: Any = None,
                           schedules: list[Any] | None = None) -> list[dict[str, Any]]:
    """The stored form of the schedules given any of the ways Prefect takes them."""
    out: list[dict[str, Any]] = []
    for item in list(schedules or []) + ([schedule] if schedule is not None else []):
        out.append(_schedule_spec(item))
    given = [x for x in (cron, interval, rrule) if x is not None]
    if len(given) > 1:
        raise DeploymentError("Give one of cron, interval and rrule (or a list of schedules).")
    if given:
        s = construct_schedule(cron=cron, interval=interval, rrule=rrule, timezone=timezone,
                               anchor_date=anchor_date)
        out.append({"schedule": s.model_dump(mode="json"), "active": True, "parameters": {}})
    return out


def _schedule_spec(item: Any) -> dict[str, Any]:
    if isinstance(item, dict) and "schedule" in item:
        body = item["schedule"]
        body = body if isinstance(body, dict) else body.model_dump(mode="json")
        return {"schedule": schedule_from_dict(body).model_dump(mode="json"),
                "active": item.get("active", True), "parameters": item.get("parameters") or {}}
    if isinstance(item, dict):
        return {"schedule": schedule_from_dict(item).model_dump(mode="json"), "active": True,
                "parameters": {}}
    return {"schedule": item.model_dump(mode="json"), "active": True, "parameters": {}}


class Deployment(BaseModel):
    """A flow, and how and when to run it. ``apply()`` records it (an upsert by flow name and
    deployment name); a worker or agent on its queue then runs its flow runs."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    name: str
    flow_name: str
    version: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    schedule: Any = None
    schedules: list[Any] = Field(default_factory=list)
    is_schedule_active: bool = True
    paused: bool = False
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameter_openapi_schema: dict[str, Any] | None = None
    enforce_parameter_schema: bool = True
    entrypoint: str | None = None
    path: str | None = None
    storage: Any = None
    infrastructure: Any = None
    job_variables: dict[str, Any] = Field(default_factory=dict)
    infra_overrides: dict[str, Any] = Field(default_factory=dict)
    work_queue_name: str | None = "default"
    work_pool_name: str | None = None
    retries: int | None = None

    @classmethod
    def build_from_flow(cls, flow: Any, name: str, output: str | None = None,
                        skip_upload: bool = False, apply: bool = False,
                        load_existing: bool = True, **kwargs: Any) -> Deployment:
        """A deployment of ``flow``: its entrypoint found from where the flow is defined
        (relative to the working directory), its parameter schema from its signature. With a
        ``storage`` block the working directory is uploaded to it (under ``path``) unless
        ``skip_upload``; without, ``path`` is the working directory, where agents find the
        code. ``output`` writes the YAML file; ``apply`` records it."""
        root = Path(os.getcwd())
        entrypoint = kwargs.pop("entrypoint", None) or flow_entrypoint_of(flow, root=root)
        storage = kwargs.get("storage")
        if storage is None:
            kwargs.setdefault("path", str(root))
        dep = cls(name=name, flow_name=flow.name, entrypoint=entrypoint,
                  parameter_openapi_schema=parameter_schema(flow),
                  description=kwargs.pop("description", None) or _doc(flow),
                  version=kwargs.pop("version", None) or getattr(flow, "version", None), **kwargs)
        if storage is not None and not skip_upload and hasattr(storage, "put_directory"):
            dep.upload_to_storage()
        if output:
            dep.to_yaml(output)
        if apply:
            dep.apply()
        return dep

    def upload_to_storage(self, local_path: str | None = None) -> int:
        """Put the project (the working directory) into the storage block, under ``path``."""
        if self.storage is None:
            return 0
        try:
            return self.storage.put_directory(local_path=local_path or os.getcwd(),
                                              to_path=self.path or None,
                                              ignore_file=_ignore_file())
        except BlockError as exc:
            if "read-only" in str(exc):
                return 0  # GitHub: the code is pushed with git, not by Legato
            raise

    def apply(self, upload: bool = False, client: Any = None) -> str:
        """Record the deployment; returns its id."""
        c = client or get_client()
        if upload:
            self.upload_to_storage()
        spec = self._spec(c)
        out = c.apply_deployment(spec)
        return str(out["id"])

    def _spec(self, client: Any) -> dict[str, Any]:
        schedules = schedules_from_options(schedule=self.schedule, schedules=self.schedules)
        if not self.is_schedule_active:
            for s in schedules:
                s["active"] = False
        return {
            "flow_name": self.flow_name, "name": self.name, "description": self.description,
            "version": self.version, "tags": list(self.tags), "parameters": self.parameters,
            "parameter_openapi_schema": self.parameter_openapi_schema,
            "enforce_parameter_schema": self.enforce_parameter_schema,
            "entrypoint": self.entrypoint, "path": self.path,
            "storage_document_id": _saved_id(self.storage, client),
            "infrastructure_document_id": _saved_id(self.infrastructure, client),
            "job_variables": {**self.infra_overrides, **self.job_variables},
            "work_queue_name": self.work_queue_name, "work_pool_name": self.work_pool_name,
            "paused": self.paused, "retries": self.retries, "schedules": schedules,
        }

    # -- the YAML file of `legato deployment build -o` ---------------------------------------------
    def to_yaml(self, path: str | Path) -> Path:
        import yaml  # lazy: only the CLI's build/apply read and write YAML

        body = self.model_dump(exclude={"storage", "infrastructure", "schedule", "schedules"})
        body["schedules"] = schedules_from_options(schedule=self.schedule,
                                                   schedules=self.schedules)
        for key in ("storage", "infrastructure"):
            block = getattr(self, key)
            body[key] = None if block is None else _block_ref(block)
        out = Path(path)
        out.write_text("# Legato deployment: `legato deployment apply " + out.name + "`\n"
                       + yaml.safe_dump(body, sort_keys=False, default_flow_style=False))
        return out

    @classmethod
    def load_from_yaml(cls, path: str | Path, client: Any = None) -> Deployment:
        import yaml  # lazy, as in to_yaml

        p = Path(path)
        try:
            body = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise DeploymentError(f"No deployment file {str(p)!r}.") from None
        except yaml.YAMLError as exc:
            raise DeploymentError(f"{p} is not valid YAML: {exc}") from None
        if not isinstance(body, dict) or "name" not in body or "flow_name" not in body:
            raise DeploymentError(f"{p} is not a deployment file (it needs name and flow_name; "
                                  "make one with `legato deployment build`).")
        c = client or get_client()
        for key in ("storage", "infrastructure"):
            ref = body.get(key)
            if isinstance(ref, dict):
                body[key] = _block_from_ref(ref, c)
        try:
            return cls(**body)
        except ValueError as exc:
            raise DeploymentError(f"{p} does not describe a deployment: {exc}") from None

    def load_flow(self, base_dir: str | Path | None = None) -> Any:
        """The deployment's flow, from its entrypoint."""
        if not self.entrypoint:
            raise DeploymentError(f"Deployment {self.name!r} has no entrypoint.")
        return load_flow_from_entrypoint(self.entrypoint, base_dir=base_dir or self.path)


def _doc(flow: Any) -> str | None:
    doc = getattr(flow, "description", None) or (flow.fn.__doc__ if hasattr(flow, "fn") else None)
    return doc.strip().split("\n\n")[0] if doc else None


def _ignore_file() -> str | None:
    return ".legatoignore" if os.path.exists(".legatoignore") else None


def _saved_id(block: Any, client: Any) -> str | None:
    """A block's document id, saving it (anonymously) when it was never saved."""
    if block is None:
        return None
    if not isinstance(block, Block):
        raise DeploymentError(f"storage and infrastructure take blocks, not "
                              f"{type(block).__name__}.")
    if block._block_document_id is None:
        block.save(f"anonymous-{_stamp()}", client=client)
    return block._block_document_id


def _stamp() -> str:
    return new_id().replace("-", "")[:20]


def _block_ref(block: Any) -> dict[str, Any]:
    if block._block_document_id is None:
        block._save(f"anonymous-{_stamp()}", False, None)
    return {"_block_document_id": block._block_document_id,
            "_block_type_slug": block.get_block_type_slug(),
            "_block_document_name": block._block_document_name}


def _block_from_ref(ref: dict[str, Any], client: Any) -> Any:
    doc_id = ref.get("_block_document_id")
    if not doc_id:
        raise DeploymentError(f"A block reference in the deployment file has no id: {ref}.")
    return block_from_document(client.read_block_document_by_id(str(doc_id),
                                                                 include_secrets=True))


__all__ = ["Deployment", "DeploymentError"]
