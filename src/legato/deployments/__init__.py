"""Deployments: how and when a flow runs without ``python script.py``.

Prefect 2 style (the seed)::

    from legato.deployments import Deployment
    Deployment.build_from_flow(flow=gather_flow, name="GCP-to-BQ-flow",
                               parameters={"year": 2020, "color": "yellow", "months": [1, 2]},
                               storage=GitHub.load("gh"), entrypoint="flows/etl.py:gather_flow",
                               work_queue_name="default").apply()

Prefect 3 style: ``flow.serve(name=..., cron=...)``, ``legato.serve(d1, d2)``,
``flow.deploy(name=..., work_pool_name=...)``, ``flow.from_source(source, entrypoint)`` (see
:mod:`legato.deployments.runner`).
"""

from __future__ import annotations

from .deployment import Deployment, schedules_from_options

__all__ = ["Deployment", "schedules_from_options"]
