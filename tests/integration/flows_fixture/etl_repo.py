"""The seed's flows as committed to the git repository: the same names and parameters as the
local copy, with different code (it says where it came from)."""

from __future__ import annotations

from legato import flow, task


@task
def dataset_name(color: str, year: int, month: int) -> str:
    return f"{color}_tripdata_{year}-{month:02}"


@flow(name="GCP flow", log_prints=True)
def gcp_flow(color: str, year: int, month: int) -> str:
    name = dataset_name(color, year, month)
    print(f"code: git repository, dataset {name}")
    return name


@flow(name="Parent GCP flow", log_prints=True)
def gather_flow(color: str, year: int, months: list[int]) -> list[str]:
    print("code: git repository")
    return [gcp_flow(color, year, month) for month in months]
