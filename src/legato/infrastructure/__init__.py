"""Infrastructure blocks: where a deployment's flow runs execute.

- :class:`Process`: a local subprocess of the agent (its own process group).
- :class:`DockerContainer`: a Docker container (``pip install 'legato[docker]'``).
- :class:`KubernetesJob`: a Kubernetes Job (``pip install 'legato[kubernetes]'``).

Each is a block: save one (``Process(working_dir="/srv").save("local")``) and name it in a
deployment (``-ib process/local``), or build one from a work pool's base job template and a
deployment's job variables (``infrastructure_for_type("docker").from_job_variables(...)``).
Importing this package imports neither the Docker SDK nor the Kubernetes client.
"""

from __future__ import annotations

from ..exceptions import BlockError
from .base import FlowRunLaunch, Infrastructure, InfrastructureHandle, InfrastructureNotFound
from .docker import DockerContainer, DockerContainerHandle
from .kubernetes import KubernetesJob, KubernetesJobHandle
from .process import Process, ProcessHandle

__all__ = [
    "DockerContainer", "DockerContainerHandle", "FlowRunLaunch", "Infrastructure",
    "InfrastructureHandle", "InfrastructureNotFound", "KubernetesJob", "KubernetesJobHandle",
    "Process", "ProcessHandle", "infrastructure_for_type",
]

INFRASTRUCTURE_TYPES: tuple[type[Infrastructure], ...] = (Process, DockerContainer, KubernetesJob)
__block_types__ = INFRASTRUCTURE_TYPES  # what `legato block register -m` registers


def infrastructure_for_type(pool_type: str) -> type[Infrastructure]:
    """The infrastructure class of a work pool type: ``process``, ``docker`` (or
    ``docker-container``), ``kubernetes`` (or ``kubernetes-job``)."""
    for cls in INFRASTRUCTURE_TYPES:
        if pool_type in cls._pool_types:
            return cls
    known = ", ".join(t for cls in INFRASTRUCTURE_TYPES for t in cls._pool_types)
    raise BlockError(f"Unknown work pool type {pool_type!r}; Legato runs: {known}.")
