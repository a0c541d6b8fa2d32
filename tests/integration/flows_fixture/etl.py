"""The seed's flows (NYC taxi data to BigQuery), without the network: the parent flow calls one
subflow per month, as `gather_flow` does in the notes. This is the project's local copy."""

from __future__ import annotations

from legato import flow, task


@task
def dataset_name(color: str, year: int, month: int) -> str:
    return f"{color}_tripdata_{year}-{month:02}"


@flow(name="GCP flow", log_prints=True)
def gcp_flow(color: str, year: int, month: int) -> str:
    name = dataset_name(color, year, month)
    print(f"code: local copy, dataset {name}")
    return name


@flow(name="Parent GCP flow", log_prints=True)
def gather_flow(color: str, year: int, months: list[int]) -> list[str]:
    print("code: local copy")
    return [gcp_flow(color, year, month) for month in months]
