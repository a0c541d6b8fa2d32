"""Run a flow run in a Docker container, through the official ``docker`` SDK (``legato[docker]``).

```python
from legato.infrastructure import DockerContainer

DockerContainer(image="registry.example.com/flows:1.4", networks=["etl"],
                volumes=["/data:/data:ro"]).save("etl-container")
```

The image must have Legato (and the flow's own dependencies) installed: the container runs
``python -m legato.engine.deployed <flow-run-id>``, which reads the deployment from the API at
``LEGATO_API_URL``. ``container_spec(launch)`` shows exactly what is sent to Docker.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator

from ..blocks._extras import require
from ..exceptions import BlockError, LegatoTimeoutError
from .base import FlowRunLaunch, Infrastructure, InfrastructureHandle, InfrastructureNotFound
from .base import default_image as _default_image

__all__ = ["DockerContainer", "DockerContainerHandle"]

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
_HOST_ALIAS = "host.docker.internal"
_VOLUME_MODES = {"ro", "rw", "z", "Z", "nocopy", "consistent", "cached", "delegated",
                 "shared", "slave", "private", "rshared", "rslave", "rprivate"}
_NAME_RETRIES = 20
_DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def _pull_policy(value: Any) -> Any:
    if isinstance(value, str):
        key = re.sub(r"[^a-z]", "", value.lower())
        return {"ifnotpresent": "IF_NOT_PRESENT", "always": "ALWAYS", "never": "NEVER"}.get(
            key, value)
    return value


def docker_container_name(name: str | None) -> str | None:
    """``name`` made a valid container name (``[a-zA-Z0-9][a-zA-Z0-9_.-]*``), or ``None`` (Docker
    picks one) when nothing usable is left."""
    if not name:
        return None
    cleaned = re.sub(r"[^a-zA-Z0-9_.-]+", "-", name)
    cleaned = re.sub(r"^[^a-zA-Z0-9]+", "", cleaned)[:128].rstrip("-_.")
    return cleaned or None


def parse_volume(spec: str) -> tuple[str, dict[str, str]]:
    """``host:container[:mode]`` as Docker's ``volumes`` mapping entry."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        raise ValueError(f"volume {spec!r} is not 'host-path-or-volume:/container/path[:mode]'")
    mode = parts[2] if len(parts) == 3 else "rw"
    if not mode or not set(mode.split(",")) <= _VOLUME_MODES:
        raise ValueError(f"volume {spec!r} has the mode {mode!r}; use ro or rw (optionally with "
                         "z, Z or a propagation mode, comma separated)")
    return parts[0], {"bind": parts[1], "mode": mode}


class DockerContainer(Infrastructure):
    """Run the flow run in a new Docker container of ``image`` (which must have Legato
    installed), on the engine ``DOCKER_HOST`` names (else the local socket)."""

    _block_type_name = "Docker Container"
    _pool_types = ("docker", "docker-container")
    _code_example = (
        "from legato.infrastructure import DockerContainer\n\n"
        'docker_container_block = DockerContainer.load("BLOCK_NAME")')

    type: Literal["docker-container"] = Field(
        default="docker-container", description="The infrastructure type.")
    image: str | None = Field(
        default=None, description="The image to run; it must have Legato installed. Empty: "
        "python:<the agent's Python version>-slim, which does not.")
    image_pull_policy: Literal["IF_NOT_PRESENT", "ALWAYS", "NEVER"] = Field(
        default="IF_NOT_PRESENT", description="Pull the image when it is missing (default), "
        "before every run, or never.")
    networks: list[str] = Field(
        default_factory=list, description="Docker networks to attach the container to.")
    network_mode: str | None = Field(
        default=None, description="Docker's network mode (bridge, host, none, "
        "container:<name>); not together with networks.")
    volumes: list[str] = Field(
        default_factory=list, description="Volumes to mount, as 'host:container[:mode]'.")
    auto_remove: bool = Field(
        default=False, description="Remove the container when it exits.")
    stream_output: bool = Field(
        default=True, description="Copy the container's output to the agent's output.")
    mem_limit: str | int | None = Field(
        default=None, description="Memory limit: bytes, or a number with b, k, m or g.")
    memswap_limit: str | int | None = Field(
        default=None, description="Memory plus swap limit (-1: unlimited swap).")
    privileged: bool = Field(default=False, description="Give the container extended "
                             "privileges (Docker's --privileged).")

    @field_validator("image_pull_policy", mode="before")
    @classmethod
    def _normalize_pull_policy(cls, value: Any) -> Any:
        return _pull_policy(value)

    @field_validator("volumes")
    @classmethod
    def _check_volumes(cls, value: list[str]) -> list[str]:
        for spec in value:
            parse_volume(spec)
        return value

    @model_validator(mode="after")
    def _one_network_choice(self) -> DockerContainer:
        if self.networks and self.network_mode:
            raise ValueError("give networks or network_mode, not both (network_mode "
                             f"{self.network_mode!r} decides the container's networking alone)")
        return self

    # -- the spec ------------------------------------------------------------------------------
    def container_spec(self, launch: FlowRunLaunch) -> dict[str, Any]:
        """The keyword arguments of ``docker.from_env().containers.create(**spec)`` for this
        flow run. An API URL on this machine's loopback is rewritten to reach the host from the
        container (host.docker.internal, mapped to the host gateway)."""
        env = self.resolved_env(launch)
        spec: dict[str, Any] = {
            "image": self.image or _default_image(),
            "command": self.resolved_command(launch),
            "environment": env,
            "labels": self.resolved_labels(launch),
            "detach": True,
            # a tiny init as PID 1 forwards SIGTERM to the flow run's Python (a PID 1 process
            # without a handler would ignore it and only die at the SIGKILL)
            "init": True,
            "auto_remove": self.auto_remove,
            "privileged": self.privileged,
        }
        name = docker_container_name(self.resolved_name(launch))
        if name:
            spec["name"] = name
        if self.volumes:
            spec["volumes"] = dict(parse_volume(v) for v in self.volumes)
        if self.networks:
            spec["network"] = self.networks[0]
        if self.network_mode:
            spec["network_mode"] = self.network_mode
        if self.mem_limit is not None:
            spec["mem_limit"] = self.mem_limit
        if self.memswap_limit is not None:
            spec["memswap_limit"] = self.memswap_limit
        url = env.get("LEGATO_API_URL")
        if url and self.network_mode != "host":
            rewritten = _reach_host(url)
            if rewritten != url:
                env["LEGATO_API_URL"] = rewritten
                spec["extra_hosts"] = {_HOST_ALIAS: "host-gateway"}
        return spec

    # -- running -------------------------------------------------------------------------------
    def start(self, launch: FlowRunLaunch) -> DockerContainerHandle:
        """Pull the image if the policy says so, create the container (a taken name gets a
        ``-1``, ``-2``... suffix), attach the other networks, start it; returns at once."""
        docker = require("docker", "docker", "DockerContainer")
        spec = self.container_spec(launch)
        client = _client(docker)
        try:
            self._pull(client, spec["image"], docker)
            container = _create(client, spec, docker)
            try:
                for network in self.networks[1:]:
                    client.networks.get(network).connect(container)
                handle = DockerContainerHandle(client, container.id, docker)
                if self.auto_remove:
                    # ask before it starts, as `docker run --rm` does: once removed, an exited
                    # container's exit code cannot be read any more
                    handle.begin_wait("removed")
                container.start()
                if not self.auto_remove:
                    handle.begin_wait("not-running")
            except BaseException:
                _remove_quietly(container)
                raise
        except (docker.errors.DockerException, OSError) as exc:
            raise _engine_error(exc, f"start a container of {spec['image']!r}") from None
        if self.stream_output:
            handle.stream_logs()
        return handle

    def _pull(self, client: Any, image: str, docker: Any) -> None:
        if self.image_pull_policy == "NEVER":
            return
        if self.image_pull_policy == "IF_NOT_PRESENT":
            try:
                client.images.get(image)
                return
            except docker.errors.ImageNotFound:
                pass
        client.images.pull(image)  # the tag in the name, else latest (never every tag)

    def kill(self, identifier: str, grace_seconds: float = 30) -> None:
        """Stop the container ``identifier`` names: SIGTERM, SIGKILL after ``grace_seconds``."""
        docker = require("docker", "docker", "DockerContainer")
        client = _client(docker)
        try:
            container = client.containers.get(identifier)
            container.stop(timeout=int(grace_seconds))
        except docker.errors.NotFound:
            raise InfrastructureNotFound(
                f"No container {identifier!r} on the Docker engine at {_docker_target()} (it "
                "was removed, or runs on another engine).") from None
        except (docker.errors.DockerException, OSError) as exc:
            raise _engine_error(exc, f"stop the container {identifier!r}") from None


class DockerContainerHandle(InfrastructureHandle):
    """A started container; ``identifier`` is its id. ``poll``/``wait`` give the exit code of
    the container's command (137 after a SIGKILL, 143 after an unhandled SIGTERM)."""

    def __init__(self, client: Any, container_id: str, docker: Any) -> None:
        self.client = client
        self.identifier = container_id
        self._docker = docker
        self._exit_code: int | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()

    def begin_wait(self, condition: str) -> None:
        """Start the thread that waits for the container's exit (Docker's wait ``condition``)."""
        threading.Thread(target=self._wait_exit, args=(condition,), daemon=True,
                         name=f"legato-docker-wait-{self.identifier[:12]}").start()

    def _wait_exit(self, condition: str) -> None:
        try:
            # timeout=None: the long poll lasts as long as the container runs
            result = self.client.api.wait(self.identifier, timeout=None, condition=condition)
            self._exit_code = int(result.get("StatusCode", -1))
        except BaseException as exc:  # noqa: BLE001 - reported by poll/wait
            self._error = exc
        finally:
            self._done.set()

    def stream_logs(self) -> None:
        """Copy the container's output to this process's stdout as it comes (a daemon thread)."""

        def copy() -> None:
            try:
                for chunk in self.client.api.logs(self.identifier, stream=True, follow=True):
                    sys.stdout.write(chunk.decode(errors="replace"))
                    sys.stdout.flush()
            except Exception:  # noqa: BLE001, S110 - the container went away; output is a nicety
                pass

        threading.Thread(target=copy, daemon=True,
                         name=f"legato-docker-logs-{self.identifier[:12]}").start()

    def _result(self) -> int:
        if isinstance(self._error, self._docker.errors.NotFound):
            raise InfrastructureNotFound(
                f"The container {self.identifier[:12]} was removed before its exit code could "
                "be read.")
        if self._error is not None:
            raise _engine_error(self._error, f"wait for the container {self.identifier!r}")
        assert self._exit_code is not None
        return self._exit_code

    def poll(self) -> int | None:
        return self._result() if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise LegatoTimeoutError(f"The container {self.identifier[:12]} was still running "
                                     f"after {timeout} s.")
        return self._result()

    def kill(self, grace_seconds: float = 30) -> None:
        if self._done.is_set():
            return
        try:
            self.client.api.stop(self.identifier, timeout=int(grace_seconds))
        except self._docker.errors.NotFound:
            pass  # it finished (and was auto-removed) meanwhile
        except (self._docker.errors.DockerException, OSError) as exc:
            raise _engine_error(exc, f"stop the container {self.identifier!r}") from None
        self._done.wait(30)


def _reach_host(url: str) -> str:
    """``url`` with a loopback host replaced by the Docker host's alias."""
    parts = urlsplit(url)
    if (parts.hostname or "").lower() not in _LOCAL_HOSTS:
        return url
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + _HOST_ALIAS
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _docker_target() -> str:
    host = os.environ.get("DOCKER_HOST")
    return f"{host} (DOCKER_HOST)" if host else f"{_DEFAULT_SOCKET} (the default; DOCKER_HOST " \
        "is not set)"


def _client(docker: Any) -> Any:
    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise BlockError(
            f"Could not reach a Docker engine at {_docker_target()}: {exc}. Start Docker, or set "
            "DOCKER_HOST to the engine's address (e.g. unix:///run/user/1000/docker.sock or "
            "tcp://host:2376).") from None


def _engine_error(exc: BaseException, doing: str) -> BlockError:
    explanation = getattr(exc, "explanation", None) or str(exc)
    return BlockError(f"Docker could not {doing} (engine at {_docker_target()}): {explanation}")


def _create(client: Any, spec: dict[str, Any], docker: Any) -> Any:
    """Create the container; a name in use gets the first free ``-N`` suffix."""
    base = spec.get("name")
    for attempt in range(_NAME_RETRIES + 1):
        kwargs = dict(spec)
        if base and attempt:
            kwargs["name"] = f"{base}-{attempt}"
        try:
            return client.containers.create(**kwargs)
        except docker.errors.APIError as exc:
            if not (base and exc.status_code == 409):
                raise
    raise BlockError(f"The container names {base!r} to {base}-{_NAME_RETRIES} are all taken; "
                     "remove old containers or set auto_remove.")


def _remove_quietly(container: Any) -> None:
    try:
        container.remove(force=True)
    except Exception:  # noqa: BLE001, S110 - cleaning up after the real error, which is raised
        pass
