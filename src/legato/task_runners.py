"""Prefect's module name for task runners (``from legato.task_runners import ...``)."""

from .runners import ConcurrentTaskRunner, SequentialTaskRunner, TaskRunner, ThreadPoolTaskRunner

__all__ = ["ConcurrentTaskRunner", "SequentialTaskRunner", "TaskRunner", "ThreadPoolTaskRunner"]
