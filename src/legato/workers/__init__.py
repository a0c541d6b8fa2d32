"""Agents (Prefect 2: ``legato agent start -q QUEUE``) and workers (Prefect 3: ``legato worker
start --pool POOL``): the processes that run deployments' flow runs."""

from .runner import Runner

__all__ = ["Runner"]
