"""The seed's NYC taxi pipeline on Legato: web -> pandas -> gzip parquet on local disk.

This is the flow from the Prefect notes with its imports renamed from `prefect` to `legato`.
Two things are configurable, because tests and the demo run without internet:

- LEGATO_EXAMPLE_DATA_URL: a URL template with {color}, {year} and {month:02}; default the real
  DataTalksClub GitHub release (see examples/nyc_taxi/fake_data.py for a local stand-in);
- LEGATO_EXAMPLE_OUTPUT: the folder the parquet files go to; default ./data.

    python examples/nyc_taxi/etl_web_to_local.py            # yellow 2021, months 1 and 2
"""

import os
from datetime import timedelta
from pathlib import Path

import pandas as pd

from legato import flow, task
from legato.tasks import task_input_hash

DEFAULT_DATA_URL = (
    "https://github.com/DataTalksClub/nyc-tlc-data/releases/download/"
    "{color}/{color}_tripdata_{year}-{month:02}.csv.gz"
)


@task(retries=3, cache_key_fn=task_input_hash, cache_expiration=timedelta(days=1))
def ingest_data(url: Path) -> pd.DataFrame:
    """Ingest the data"""
    df = pd.read_csv(url)
    return df


@task(log_prints=True)
def clean_it(df: pd.DataFrame) -> pd.DataFrame:
    """Clean the data"""
    df.tpep_pickup_datetime = pd.to_datetime(df.tpep_pickup_datetime)
    df.tpep_dropoff_datetime = pd.to_datetime(df.tpep_dropoff_datetime)

    print(df.head(2))
    print(f"columns: {df.dtypes}")
    print(f"rows: {len(df)}")

    return df


@task
def save_data_local(df: pd.DataFrame, path: Path) -> str:
    """Save the file locally"""
    local_file = f"{path}.parquet"
    df.to_parquet(local_file, compression="gzip")
    return local_file


@flow(name="GCP flow")
def gcp_flow(color: str, year: int, month: int) -> None:
    dataset_file = f"{color}_tripdata_{year}-{month:02}"
    # read at call time (not import time), so a test or the demo can point it elsewhere
    url_template = os.environ.get("LEGATO_EXAMPLE_DATA_URL", DEFAULT_DATA_URL)
    dataset_url = url_template.format(color=color, year=year, month=month)
    output = Path(os.environ.get("LEGATO_EXAMPLE_OUTPUT", "data"))
    output.mkdir(parents=True, exist_ok=True)  # the notes assumed data/ existed

    raw_data = ingest_data(dataset_url)
    clean_data = clean_it(raw_data)
    save_data_local(clean_data, output / dataset_file)


@flow(name="Parent GCP flow")
def gather_flow(color: str, year: int, months: list[int]) -> None:
    for month in months:
        gcp_flow(color, year, month)


if __name__ == "__main__":
    color = "yellow"
    year = 2021
    months = [1, 2]

    gather_flow(color, year, months)
