"""Prefect 3's deployment API: ``flow.to_deployment``, ``flow.serve``, ``legato.serve``,
``flow.deploy`` and ``flow.from_source``.

- ``flow.to_deployment(name, cron=..., ...)`` describes a deployment (a
  :class:`RunnerDeployment`); nothing is recorded until it is served or deployed.
- ``flow.serve(name, ...)`` / ``legato.serve(d1, d2, ...)`` record the deployments, each on a
  work queue of its own (``serve:<flow name>/<deployment name>`` in the agents' pool, so no
  agent or worker started for other queues takes its runs), then run their flow runs from this
  process, each in a subprocess, until Ctrl-C or SIGTERM.
- ``flow.deploy(name, work_pool_name=...)`` records a deployment on a work pool for workers
  (``legato worker start --pool NAME``) to run.
- ``flow.from_source(source, entrypoint)`` (see :mod:`legato.deployments.source`) loads a flow
  from a folder, a git repository or a storage block; its deployments make workers pull the code
  from there.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..client.factory import get_client
from ..exceptions import LegatoError, ObjectNotFound
from ..logging import get_logger
from ..settings import get_settings
from ..utilities.entrypoints import flow_entrypoint_of
from ..utilities.parameter_schema import parameter_schema
from ..workers import Runner
from .deployment import Deployment, DeploymentError, schedules_from_options
from .source import flow_from_source, source_of

__all__ = [
    "RunnerDeployment", "build_schedules", "deploy", "deploy_flow", "flow_from_source",
    "serve", "serve_flow", "serve_queue_name", "to_deployment",
]

log = get_logger("legato.deployments")
# through a server the claim is a long poll; Ctrl-C waits for the one in flight (what it claims is
# handed back), so a short one keeps stopping quick
_LONG_POLL_SECONDS = 5.0
_SERVE_OPTIONS = ("limit", "pause_on_shutdown", "print_starting_message",
                  "shutdown_grace_seconds", "poll_seconds")


class RunnerDeployment(Deployment):
    """A deployment as ``flow.to_deployment`` makes it: the flow's entrypoint and code location
    (its project folder, or the storage ``from_source`` pulled it from), parameters and
    schedules. Serve it (``legato.serve``), deploy it to a work pool (:func:`deploy`), or
    record it as it is (``apply()``)."""

    @classmethod
    def from_flow(cls, flow: Any, name: str, *, cron: Any = None, interval: Any = None,
                  rrule: Any = None, schedule: Any = None, schedules: list[Any] | None = None,
                  timezone: str | None = None, anchor_date: Any = None,
                  parameters: dict[str, Any] | None = None, tags: list[str] | None = None,
                  description: str | None = None, version: str | None = None,
                  paused: bool = False, enforce_parameter_schema: bool = True,
                  job_variables: dict[str, Any] | None = None,
                  work_pool_name: str | None = None, work_queue_name: str | None = None,
                  entrypoint: str | None = None) -> RunnerDeployment:
        """The deployment ``name`` of ``flow``: its entrypoint found from the flow's file (or
        the one ``from_source`` was given), its parameter schema from its signature, and one
        of ``cron``/``interval``/``rrule`` (a value or a list), ``schedule`` or
        ``schedules``."""
        if not isinstance(name, str) or not name.strip() or "/" in name:
            raise DeploymentError(f"A deployment needs a name without '/'; got {name!r}.")
        source = source_of(flow)
        storage = None
        if source is not None:
            entrypoint = entrypoint or source.entrypoint
            storage, path = source.storage, source.folder
        elif entrypoint is not None:
            path = str(Path.cwd())
        else:
            root = project_folder(flow)
            entrypoint, path = flow_entrypoint_of(flow, root=root), str(root)
        return cls(
            name=name, flow_name=flow.name, entrypoint=entrypoint, path=path, storage=storage,
            parameters=dict(parameters or {}), parameter_openapi_schema=parameter_schema(flow),
            enforce_parameter_schema=enforce_parameter_schema,
            description=description or _first_paragraph(getattr(flow, "description", None)),
            version=version or getattr(flow, "version", None), tags=list(tags or []),
            schedules=build_schedules(cron=cron, interval=interval, rrule=rrule,
                                      schedule=schedule, schedules=schedules,
                                      timezone=timezone, anchor_date=anchor_date),
            paused=paused, job_variables=dict(job_variables or {}),
            work_pool_name=work_pool_name, work_queue_name=work_queue_name or "default")


def to_deployment(flow: Any, name: str, **options: Any) -> RunnerDeployment:
    """``flow.to_deployment(name, ...)``: see :meth:`RunnerDeployment.from_flow`."""
    return RunnerDeployment.from_flow(flow, name, **options)


def project_folder(flow: Any) -> Path:
    """The folder a flow's code is found from: the working directory when the flow's file is
    under it (so sibling packages import as they do now), else the file's own folder."""
    cwd = Path.cwd().resolve()
    code = getattr(getattr(flow, "fn", None), "__code__", None)
    filename = code.co_filename if code is not None else ""
    if not filename or filename.startswith("<") or not os.path.exists(filename):
        return cwd  # flow_entrypoint_of says why such a flow cannot be deployed
    file = Path(filename).resolve()
    return cwd if file.is_relative_to(cwd) else file.parent


def build_schedules(*, cron: Any = None, interval: Any = None, rrule: Any = None,
                    schedule: Any = None, schedules: list[Any] | None = None,
                    timezone: str | None = None, anchor_date: Any = None
                    ) -> list[dict[str, Any]]:
    """Stored schedules from Prefect 3's options: one of ``cron``, ``interval``, ``rrule``
    (each a value or a list of values), ``schedule`` or ``schedules``."""
    given = [k for k, v in (("cron", cron), ("interval", interval), ("rrule", rrule),
                            ("schedule", schedule), ("schedules", schedules)) if v is not None]
    if len(given) > 1:
        raise DeploymentError(
            f"Give one of cron, interval, rrule, schedule and schedules, not {' and '.join(given)}"
            ". For several schedules pass a list (cron=['0 9 * * *', '0 17 * * *']) or "
            "schedules=[...].")
    out: list[dict[str, Any]] = []
    for kind, value in (("cron", cron), ("interval", interval), ("rrule", rrule)):
        for one in (value if isinstance(value, (list, tuple)) else [value]):
            if one is not None:
                out += schedules_from_options(**{kind: one}, timezone=timezone,
                                              anchor_date=anchor_date)
    if schedule is not None or schedules:
        out += schedules_from_options(schedule=schedule, schedules=schedules)
    return out


def _first_paragraph(text: str | None) -> str | None:
    return text.strip().split("\n\n")[0] if text else None


# -- flow.deploy --------------------------------------------------------------------------------
def deploy(*deployments: RunnerDeployment, work_pool_name: str | None = None,
           image: Any = None, build: bool = False, push: bool = False,
           print_next_steps: bool = True, client: Any = None) -> list[str]:
    """Record deployments on a work pool (which must exist); returns their ids. ``image`` is
    stored as the ``image`` job variable; Legato builds and pushes no images."""
    _check_deployments(deployments, "deploy")
    c = client or get_client()
    image_name = _image_name(image)
    if build or push:
        print(f"Legato does not build or push images (build={build}, push={push} are "
              f"ignored): build and push {image_name or 'the image'} yourself; the deployment "
              "only records its name.", file=sys.stderr, flush=True)
    ids, pools = [], {}
    for d in deployments:
        pool = work_pool_name or d.work_pool_name
        if not pool:
            raise DeploymentError(
                f"Deployment {d.flow_name}/{d.name} needs a work pool: pass work_pool_name "
                "(create one with `legato work-pool create NAME --type process`), or serve the "
                "flow from this process with flow.serve().")
        if pool not in pools:
            pools[pool] = _existing_pool(c, pool)
        variables = dict(d.job_variables)
        if image_name:
            _check_takes_image(pools[pool])
            variables["image"] = image_name
        ids.append(d.model_copy(update={"work_pool_name": pool, "job_variables": variables})
                   .apply(client=c))
        if print_next_steps:
            print(f"Deployment '{d.flow_name}/{d.name}' applied to work pool {pool!r}.",
                  flush=True)
    if print_next_steps:
        for pool in pools:
            print(f"To run its flow runs, start a worker: legato worker start --pool '{pool}'",
                  flush=True)
        for d in deployments:
            print(f"To run it now: legato deployment run '{d.flow_name}/{d.name}'", flush=True)
    return ids


def deploy_flow(flow: Any, name: str, work_pool_name: str | None = None, *,
                image: Any = None, build: bool = False, push: bool = False,
                print_next_steps: bool = True, **options: Any) -> str:
    """``flow.deploy(name, work_pool_name, ...)``: the new deployment's id."""
    d = to_deployment(flow, name, work_pool_name=work_pool_name, **options)
    return deploy(d, image=image, build=build, push=push,
                  print_next_steps=print_next_steps)[0]


def _existing_pool(client: Any, name: str) -> dict[str, Any]:
    try:
        return dict(client.read_work_pool(name))
    except ObjectNotFound as exc:
        raise DeploymentError(
            f"{exc} Create it first: legato work-pool create '{name}' --type process (then "
            f"start a worker: legato worker start --pool '{name}').") from None


def _check_takes_image(pool: dict[str, Any]) -> None:
    """An image is a job variable of container pools (docker, kubernetes); a process pool's
    workers would refuse the run."""
    template = pool.get("base_job_template") or {}
    if not template and pool.get("type") not in (None, "agent"):
        # lazy: the infrastructure blocks load only when an image is given
        from ..infrastructure import infrastructure_for_type

        template = infrastructure_for_type(pool["type"]).base_job_template()
    variables = (template.get("variables") or {}).get("properties") or {}
    if "image" not in variables:
        raise DeploymentError(
            f"Work pool {pool['name']!r} (type {pool.get('type')}) runs no images: its job "
            "variables have no 'image'. Leave image out (the workers run the code from the "
            "deployment's folder or storage), or deploy to a container pool, e.g. "
            f"`legato work-pool create NAME --type docker`.")


def _image_name(image: Any) -> str | None:
    if image is None or isinstance(image, str):
        return image or None
    # a DockerImage-like object: its full reference, else its name (and tag)
    for attr in ("reference", "name"):
        value = getattr(image, attr, None)
        if isinstance(value, str) and value:
            tag = getattr(image, "tag", None)
            return f"{value}:{tag}" if attr == "name" and tag and ":" not in value else value
    raise DeploymentError(f"image takes an image name such as 'registry/flows:1.0', not "
                          f"{type(image).__name__}.")


# -- serve --------------------------------------------------------------------------------------
def serve_queue_name(deployment: Deployment) -> str:
    """The work queue a served deployment's runs wait on (in the agents' pool)."""
    return f"serve:{deployment.flow_name}/{deployment.name}"


def serve_flow(flow: Any, name: str | None = None, **options: Any) -> None:
    """``flow.serve(name, ...)``: serve one deployment of ``flow`` (named after the flow when no
    name is given) until Ctrl-C or SIGTERM."""
    serve_options = {k: options.pop(k) for k in _SERVE_OPTIONS if k in options}
    serve(to_deployment(flow, name or flow.name, **options), **serve_options)


def serve(*deployments: RunnerDeployment, limit: int | None = None,
          pause_on_shutdown: bool = True, print_starting_message: bool = True,
          shutdown_grace_seconds: float = 10.0, poll_seconds: float = 1.0) -> None:
    """Record the deployments and run their flow runs from this process until Ctrl-C or
    SIGTERM, at most ``limit`` at a time (each in a subprocess started in the deployment's
    folder, or in a folder its storage was pulled into).

    On stop, no more runs are claimed, a run claimed and not yet started is handed back
    (Scheduled again), and flow runs still running get ``shutdown_grace_seconds`` to finish
    (after that they keep running in their own processes and report on their own). With
    ``pause_on_shutdown`` the deployments' schedules are paused, so no runs pile up while
    nothing serves them; serving again resumes them."""
    _check_deployments(deployments, "serve")
    _not_inside_a_flow_run()
    if limit is not None and limit < 1:
        raise DeploymentError(f"limit must be 1 or more (flow runs at once); got {limit}.")
    settings = get_settings()
    client = get_client(settings)
    served: list[tuple[Deployment, str]] = []
    seen: set[str] = set()
    for d in deployments:
        address = f"{d.flow_name}/{d.name}"
        if address in seen:
            raise DeploymentError(f"Deployment {address!r} is given twice to serve().")
        seen.add(address)
        queued = d.model_copy(update={"work_queue_name": serve_queue_name(d),
                                      "work_pool_name": None})
        served.append((queued, queued.apply(client=client)))
    runner = _ServeRunner(
        client, f"serve-{socket.gethostname()}-{os.getpid()}",
        queue_names=[d.work_queue_name for d, _ in served if d.work_queue_name],
        limit=limit, poll_seconds=poll_seconds, long_poll_seconds=_LONG_POLL_SECONDS,
        api_url=settings.api_url,
        api_key=settings.api_key, deployment_ids=[i for _, i in served],
        horizon=settings.scheduler_horizon_seconds)
    if print_starting_message:
        _print_starting_message([d for d, _ in served])
    restore = _install_stop_handlers(runner)
    try:
        runner.run()
        if runner.running:
            print(f"Waiting up to {shutdown_grace_seconds:g} s for {len(runner.running)} flow "
                  "run(s) to finish...", flush=True)
            runner.wait_for_running(shutdown_grace_seconds)
        for run_id in runner.running:
            print(f"Flow run {run_id} is still running in its own process; it finishes and "
                  "reports on its own.", flush=True)
    finally:
        restore()
        if pause_on_shutdown:
            _pause_schedules(client, served)
    print("Stopped serving.", flush=True)


def _not_inside_a_flow_run() -> None:
    """A flow run's process loads the flow's file; a ``serve()`` call that is not under
    ``if __name__ == "__main__":`` would make every run serve again, forever."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if getattr(spec, "name", None) == "legato.engine.deployed":
        raise DeploymentError(
            "serve() was called while a flow run's process loaded the flow's file: put the "
            "serve() call under `if __name__ == \"__main__\":` so it runs only when you start "
            "the script.")


def _check_deployments(deployments: tuple[Any, ...], verb: str) -> None:
    if not deployments:
        raise DeploymentError(f"{verb}() needs at least one deployment: "
                              f"{verb}(my_flow.to_deployment(name='...')).")
    for d in deployments:
        if not isinstance(d, Deployment):
            raise DeploymentError(
                f"{verb}() takes deployments made with flow.to_deployment(name=...), not "
                f"{type(d).__name__}.")


def _print_starting_message(deployments: list[Deployment]) -> None:
    names = ", ".join(f"'{d.flow_name}/{d.name}'" for d in deployments)
    lines = [f"Serving {names}: polling for flow runs (Ctrl-C to stop)."]
    for d in deployments:
        if d.schedules:
            lines.append(f"'{d.flow_name}/{d.name}' runs on its schedule"
                         f"{' (paused)' if d.paused else ''}.")
    lines.append("To trigger a run:")
    lines += [f"  legato deployment run '{d.flow_name}/{d.name}'" for d in deployments]
    print("\n".join(lines), flush=True)


def _install_stop_handlers(runner: Runner) -> Any:
    """SIGINT and SIGTERM stop the runner (a second Ctrl-C quits at once); returns the function
    that puts the previous handlers back. Outside the main thread nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum: int, frame: Any) -> None:
        if runner.stopping.is_set():
            raise KeyboardInterrupt
        print("Stopping: no new flow runs are claimed (Ctrl-C again to quit at once).",
              flush=True)
        runner.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore


def _pause_schedules(client: Any, served: list[tuple[Deployment, str]]) -> None:
    for d, dep_id in served:
        if not d.schedules:
            continue
        try:
            client.set_schedules_active(dep_id, False)
            print(f"Paused the schedules of '{d.flow_name}/{d.name}'.", flush=True)
        except LegatoError as exc:
            log.warning("Could not pause the schedules of %s/%s: %s", d.flow_name, d.name, exc)


class _ServeRunner(Runner):
    """The workers' run loop, polling the served deployments' queues. Without a server (the
    history database in this process) it also makes the deployments' scheduled runs, which a
    server's scheduler would make."""

    def __init__(self, client: Any, name: str, *, deployment_ids: list[str],
                 horizon: float, schedule_every: float = 10.0, **kwargs: Any) -> None:
        super().__init__(client, name, **kwargs)
        self.deployment_ids = deployment_ids
        self.horizon = dt.timedelta(seconds=horizon)
        self.schedule_every = schedule_every
        self._db = None if self.api_url else getattr(client, "db", None)
        self._next_schedule = 0.0

    def run_once(self) -> int:
        if self._db is not None and time.monotonic() >= self._next_schedule:
            self._next_schedule = time.monotonic() + self.schedule_every
            self._schedule_runs()
        return super().run_once()

    def _schedule_runs(self) -> None:
        # lazy: croniter and dateutil load only when serving without a server
        from ..core.run_control import schedule_runs

        for dep_id in self.deployment_ids:
            try:
                schedule_runs(self._db, deployment_id=dep_id, horizon=self.horizon)
            except LegatoError as exc:
                log.warning("Could not make the scheduled runs of deployment %s: %s",
                            dep_id, exc)
