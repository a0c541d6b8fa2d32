"""Run a flow run as a Kubernetes Job, through the official ``kubernetes`` client
(``legato[kubernetes]``).

```python
from legato.infrastructure import KubernetesJob

KubernetesJob(
    image="registry.example.com/flows:1.4", namespace="etl", finished_job_ttl=3600,
    customizations=[{"op": "add", "path": "/spec/template/spec/containers/0/resources",
                     "value": {"limits": {"memory": "2Gi"}}}],
).save("etl-job")
```

``build_job(launch)`` gives the exact ``batch/v1`` Job manifest: the base ``job`` (or Legato's),
the run's name, labels, image, command and env filled in, then the JSON-Patch (RFC 6902)
``customizations`` applied. ``start`` reaches the cluster from inside it (the pod's service
account) or through the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``).
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from typing import Any, Literal

from pydantic import Field, field_validator

from ..blocks._extras import require
from ..exceptions import BlockError, LegatoTimeoutError
from .base import (
    FlowRunLaunch,
    Infrastructure,
    InfrastructureHandle,
    InfrastructureNotFound,
    apply_json_patch,
    check_patch_operation,
)
from .base import default_image as _default_image

__all__ = ["KubernetesJob", "KubernetesJobHandle", "apply_json_patch", "job_name_for"]

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_POLL_SECONDS = 2.0


def _pull_policy(value: Any) -> Any:
    if isinstance(value, str):
        key = re.sub(r"[^a-z]", "", value.lower())
        return {"ifnotpresent": "IfNotPresent", "always": "Always", "never": "Never"}.get(
            key, value)
    return value


def _default_job() -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"labels": {}},
        "spec": {"template": {"spec": {"containers": [{"name": "legato-job"}]}}},
    }


def job_name_for(run_name: str | None, flow_run_id: str) -> str:
    """A Job name (a DNS-1123 label, at most 63 characters) from the run's name and the end of
    its id, e.g. ``crimson-otter-1a2b3c4d``."""
    suffix = re.sub(r"[^a-z0-9]", "", flow_run_id.lower())[-8:] or "run"
    slug = re.sub(r"[^a-z0-9]+", "-", (run_name or "").lower()).strip("-") or "flow-run"
    slug = slug[:63 - len(suffix) - 1].rstrip("-")
    return f"{slug}-{suffix}"


def label_value(value: str) -> str:
    """``value`` made a valid label value: at most 63 of ``[A-Za-z0-9_.-]``, alphanumeric at
    both ends (the rest replaced by ``-``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(value))[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)


def check_label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if (not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name)
            or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)))):
        raise BlockError(f"{key!r} is not a valid Kubernetes label key: [prefix/]name, the name "
                         "at most 63 letters, digits, '-', '_' or '.', the prefix a DNS name.")
    return key


class KubernetesJob(Infrastructure):
    """Run the flow run as a Kubernetes Job (one pod, no retries) of ``image`` in
    ``namespace``; the image must have Legato installed."""

    _block_type_name = "Kubernetes Job"
    _pool_types = ("kubernetes", "kubernetes-job")
    _code_example = (
        "from legato.infrastructure import KubernetesJob\n\n"
        'kubernetes_job_block = KubernetesJob.load("BLOCK_NAME")')

    type: Literal["kubernetes-job"] = Field(
        default="kubernetes-job", description="The infrastructure type.")
    image: str | None = Field(
        default=None, description="The image to run (it must have Legato installed). Empty: "
        "the base job's image, else python:<the agent's Python version>-slim.")
    namespace: str = Field(default="default", description="The namespace to create the Job in.")
    service_account_name: str | None = Field(
        default=None, description="The service account the pod runs as.")
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] | None = Field(
        default=None, description="The container's imagePullPolicy; empty: the cluster's "
        "default.")
    job_watch_timeout_seconds: int | None = Field(
        default=None, description="How long wait() follows the Job; empty: until it ends.")
    pod_watch_timeout_seconds: int = Field(
        default=60, description="How long the pod may take to start before the Job is deleted "
        "and the run reported as crashed (exit code -1).")
    finished_job_ttl: int | None = Field(
        default=None, description="Seconds Kubernetes keeps a finished Job (and its pod) "
        "before deleting it; empty: kept until deleted.")
    customizations: list[dict[str, Any]] = Field(
        default_factory=list, description="JSON-Patch (RFC 6902) operations applied to the "
        "Job manifest, e.g. {\"op\": \"add\", \"path\": \"/spec/activeDeadlineSeconds\", "
        "\"value\": 3600}.")
    job: dict[str, Any] | None = Field(
        default=None, title="Base Job manifest",
        description="A batch/v1 Job manifest to start from; empty: Legato's minimal one.")

    @field_validator("image_pull_policy", mode="before")
    @classmethod
    def _normalize_pull_policy(cls, value: Any) -> Any:
        return _pull_policy(value)

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
            raise ValueError(f"namespace {value!r} is not a valid Kubernetes namespace "
                             "(lowercase letters, digits and '-', at most 63)")
        return value

    @field_validator("customizations", mode="before")
    @classmethod
    def _parse_customizations(cls, value: Any) -> Any:
        if isinstance(value, str):  # a JSON string, as the CLI and Prefect accept
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"customizations is not valid JSON: {exc}") from None
        if isinstance(value, list):
            for i, op in enumerate(value):
                check_patch_operation(i, op, ValueError)
        return value

    @field_validator("job")
    @classmethod
    def _check_job(cls, job: dict[str, Any] | None) -> dict[str, Any] | None:
        if job is not None and (job.get("apiVersion", "batch/v1") != "batch/v1"
                                or job.get("kind", "Job") != "Job"):
            raise ValueError("job must be a batch/v1 Job manifest (apiVersion batch/v1, kind "
                             f"Job), not {job.get('apiVersion')}/{job.get('kind')}")
        return job

    # -- the manifest --------------------------------------------------------------------------
    def build_job(self, launch: FlowRunLaunch) -> dict[str, Any]:
        """The complete Job manifest for this flow run, customizations applied."""
        manifest = copy.deepcopy(self.job) if self.job else _default_job()
        manifest["apiVersion"], manifest["kind"] = "batch/v1", "Job"
        metadata = manifest.setdefault("metadata", {})
        metadata.pop("generateName", None)
        metadata["name"] = job_name_for(self.resolved_name(launch), launch.flow_run_id)
        metadata["namespace"] = self.namespace
        labels = {check_label_key(k): label_value(v)
                  for k, v in self.resolved_labels(launch).items()}
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
        spec = manifest.setdefault("spec", {})
        spec.setdefault("backoffLimit", 0)  # a failed flow run is not re-run by Kubernetes
        if self.finished_job_ttl is not None:
            spec["ttlSecondsAfterFinished"] = self.finished_job_ttl
        template = spec.setdefault("template", {})
        template_meta = template.setdefault("metadata", {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
        pod = template.setdefault("spec", {})
        pod.setdefault("restartPolicy", "Never")
        if self.service_account_name:
            pod["serviceAccountName"] = self.service_account_name
        containers = pod.setdefault("containers", [])
        if not containers:
            containers.append({})
        container = containers[0]
        container.setdefault("name", "legato-job")
        container["image"] = self.image or container.get("image") or _default_image()
        container["command"] = self.resolved_command(launch)
        container["env"] = _merge_env(container.get("env") or [], self.resolved_env(launch))
        if self.image_pull_policy:
            container["imagePullPolicy"] = self.image_pull_policy
        manifest = apply_json_patch(manifest, self.customizations)
        _check_manifest(manifest)
        return manifest

    # -- running -------------------------------------------------------------------------------
    def start(self, launch: FlowRunLaunch) -> KubernetesJobHandle:
        """Create the Job; returns at once. A name in use gets a ``-2``, ``-3``... suffix."""
        k8s = require("kubernetes", "kubernetes", "KubernetesJob")
        manifest = self.build_job(launch)
        api = _api_client(k8s)
        batch = k8s.client.BatchV1Api(api)
        namespace = manifest["metadata"].get("namespace") or self.namespace
        base = manifest["metadata"]["name"]
        for attempt in range(1, 11):
            if attempt > 1:
                suffix = f"-{attempt}"
                manifest["metadata"]["name"] = base[:63 - len(suffix)].rstrip("-") + suffix
            try:
                created = _call(k8s, api, batch.create_namespaced_job, namespace, manifest,
                                doing=f"create the Job in namespace {namespace!r}")
                break
            except _Conflict:
                continue
        else:
            raise BlockError(f"The Job names {base!r} to {base}-10 are all taken in namespace "
                             f"{namespace!r}; delete old Jobs or set finished_job_ttl.")
        return KubernetesJobHandle(self, api, namespace, created.metadata.name, k8s)

    def kill(self, identifier: str, grace_seconds: float = 30) -> None:
        """Delete the Job ``namespace:job-name`` and its pod (SIGTERM, then SIGKILL after
        ``grace_seconds``). Raises InfrastructureNotFound when the Job is gone."""
        namespace, _, name = str(identifier).partition(":")
        if not namespace or not name:
            raise BlockError(f"{identifier!r} is not a Job identifier; it looks like "
                             "'namespace:job-name' (as the handle's identifier says).")
        k8s = require("kubernetes", "kubernetes", "KubernetesJob")
        api = _api_client(k8s)
        handle = KubernetesJobHandle(self, api, namespace, name, k8s)
        if handle.read_job() is None:
            raise InfrastructureNotFound(f"No Job {name!r} in namespace {namespace!r} (it was "
                                         "deleted, or its TTL removed it).")
        handle.kill(grace_seconds)


class KubernetesJobHandle(InfrastructureHandle):
    """A created Job; ``identifier`` is ``namespace:job-name``. The exit code is the pod's
    container's; -1 when the pod never started or the Job was deleted."""

    def __init__(self, infra: KubernetesJob, api: Any, namespace: str, name: str,
                 k8s: Any) -> None:
        self.infra, self.api, self.namespace, self.name, self._k8s = infra, api, namespace, name, k8s
        self.identifier = f"{namespace}:{name}"
        self._batch = k8s.client.BatchV1Api(api)
        self._core = k8s.client.CoreV1Api(api)
        self._started = time.monotonic()
        self._exit_code: int | None = None

    def read_job(self) -> Any:
        try:
            return _call(self._k8s, self.api, self._batch.read_namespaced_job_status, self.name,
                         self.namespace, doing=f"read the Job {self.identifier}")
        except InfrastructureNotFound:
            return None

    def _pods(self) -> list[Any]:
        pods = _call(self._k8s, self.api, self._core.list_namespaced_pod, self.namespace,
                     label_selector=f"job-name={self.name}",
                     doing=f"list the pods of the Job {self.identifier}")
        return list(pods.items or [])

    def _pod_exit_code(self, default: int) -> int:
        for pod in self._pods():
            for status in (pod.status.container_statuses or []) if pod.status else []:
                terminated = status.state.terminated if status.state else None
                if terminated is not None and terminated.exit_code is not None:
                    return int(terminated.exit_code)
        return default

    def poll(self) -> int | None:
        if self._exit_code is not None:
            return self._exit_code
        job = self.read_job()
        if job is None:
            self._exit_code = -1
            return -1
        status = job.status
        if status is not None and status.succeeded:
            self._exit_code = 0
        elif status is not None and (status.failed or any(
                c.type == "Failed" and c.status == "True" for c in status.conditions or [])):
            self._exit_code = self._pod_exit_code(default=1)
        return self._exit_code

    def _pod_started(self) -> bool:
        return any(pod.status is not None and pod.status.phase not in (None, "Pending")
                   for pod in self._pods())

    def wait(self, timeout: float | None = None) -> int:
        limit = timeout if timeout is not None else self.infra.job_watch_timeout_seconds
        deadline = None if limit is None else time.monotonic() + limit
        pod_seen = False
        while True:
            code = self.poll()
            if code is not None:
                return code
            if not pod_seen:
                pod_seen = self._pod_started()
                waited = time.monotonic() - self._started
                if not pod_seen and waited > self.infra.pod_watch_timeout_seconds:
                    self.kill(0)
                    self._exit_code = -1
                    return -1
            if deadline is not None and time.monotonic() >= deadline:
                raise LegatoTimeoutError(f"The Job {self.identifier} was still running after "
                                         f"{limit} s.")
            time.sleep(_POLL_SECONDS)

    def kill(self, grace_seconds: float = 30) -> None:
        grace = max(0, int(grace_seconds))
        # the pods first, with the grace asked for (deleting the Job alone would delete them
        # with their own terminationGracePeriodSeconds)
        for pod in self._pods():
            try:
                _call(self._k8s, self.api, self._core.delete_namespaced_pod, pod.metadata.name,
                      self.namespace, grace_period_seconds=grace,
                      doing=f"delete the pod {pod.metadata.name}")
            except InfrastructureNotFound:
                pass
        try:
            _call(self._k8s, self.api, self._batch.delete_namespaced_job, self.name,
                  self.namespace, grace_period_seconds=grace, propagation_policy="Background",
                  doing=f"delete the Job {self.identifier}")
        except InfrastructureNotFound:
            pass  # already gone: fine


class _Conflict(Exception):
    pass


def _call(k8s: Any, api: Any, fn: Any, *args: Any, doing: str, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with the client's errors turned into Legato's."""
    host = api.configuration.host
    try:
        return fn(*args, **kwargs)
    except k8s.client.exceptions.ApiException as exc:
        if exc.status == 404:
            raise InfrastructureNotFound(f"Kubernetes at {host}: {doing}: not found.") from None
        if exc.status == 409:
            raise _Conflict(str(exc)) from None
        message = exc.reason
        try:
            message = json.loads(exc.body).get("message") or message
        except (TypeError, ValueError, AttributeError):
            pass
        raise BlockError(f"Kubernetes at {host} refused to {doing}: {exc.status} "
                         f"{message}.") from None
    except Exception as exc:  # urllib3's connection and TLS errors; an answer not understood
        if isinstance(exc, (BlockError, _Conflict)):
            raise
        if isinstance(exc, OSError) or type(exc).__module__.startswith("urllib3"):
            raise BlockError(f"Could not reach Kubernetes at {host} to {doing}: {exc}.") from None
        raise BlockError(f"Kubernetes at {host}: could not {doing}: {exc}.") from None


def _api_client(k8s: Any) -> Any:
    """A client for the cluster this runs in, else the kubeconfig's current context."""
    try:
        configuration = k8s.client.Configuration()
        k8s.config.load_incluster_config(client_configuration=configuration)
        return k8s.client.ApiClient(configuration)
    except k8s.config.ConfigException as exc:
        in_cluster = str(exc)
    try:
        # named each time: the client reads KUBECONFIG once, when it is imported
        return k8s.config.new_client_from_config(config_file=_kubeconfig_path())
    except (k8s.config.ConfigException, OSError) as exc:
        raise BlockError(
            f"No Kubernetes cluster to run the Job on: not inside a cluster ({in_cluster}) and "
            f"no usable kubeconfig at {_kubeconfig_path()} ({exc}). Run the agent in the "
            "cluster, or point KUBECONFIG at a kubeconfig file.") from None


def _kubeconfig_path() -> str:
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _merge_env(existing: list[dict[str, Any]], env: dict[str, str]) -> list[dict[str, Any]]:
    """The container's env list: the base job's entries not overridden, then ours, in order."""
    out = [dict(e) for e in existing if isinstance(e, dict) and e.get("name") not in env]
    out.extend({"name": k, "value": v} for k, v in env.items())
    return out


def _check_manifest(manifest: dict[str, Any]) -> None:
    name = (manifest.get("metadata") or {}).get("name")
    if not isinstance(name, str) or len(name) > 63 or not _DNS_LABEL.fullmatch(name):
        raise BlockError(f"The Job's name {name!r} is not a valid DNS-1123 label (lowercase "
                         "letters, digits and '-', at most 63); check the customizations.")
    try:
        containers = manifest["spec"]["template"]["spec"]["containers"]
        ok = isinstance(containers, list) and containers and all(
            isinstance(c, dict) and c.get("name") and c.get("image") for c in containers)
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise BlockError("The Job manifest needs spec.template.spec.containers, each with a "
                         "name and an image; check the base job and the customizations.")
