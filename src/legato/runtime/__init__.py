"""What is running now, as module attributes: ``legato.runtime.flow_run.id``, ``.name``,
``.parameters``; ``legato.runtime.task_run.id``, ``.name``, ``.run_count``. Outside a run the ids
are None (as in Prefect)."""

from . import flow_run, task_run

__all__ = ["flow_run", "task_run"]
