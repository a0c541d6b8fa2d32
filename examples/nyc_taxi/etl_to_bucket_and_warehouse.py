"""The seed's full NYC taxi example on Legato: web -> pandas -> gzip parquet -> a bucket block ->
a warehouse table, for several months by a parent flow.

The seed's code with its imports renamed, and its two block names made parameters (the seed
loaded `GcsBucket.load("zoom-gcs")` and wrote to BigQuery with a `GcpCredentials` block):

- ``bucket_block``: a saved block with ``upload_from_path`` — ``local-file-system/NAME``
  (the default: a folder), ``gcs-bucket/NAME`` or ``s3-bucket/NAME``;
- ``warehouse_block``: a saved block with ``write_dataframe`` — ``sql-warehouse/NAME`` (the
  default: a DuckDB file; or any SQLAlchemy URL, e.g. PostgreSQL) or ``bigquery-warehouse/NAME``.

examples/nyc_taxi/setup_blocks.py saves both and the deployment; examples/demo.py runs it all.
Environment (for running offline and in tests):

- LEGATO_EXAMPLE_DATA_URL: a URL template with {color}, {year} and {month:02}; default the real
  DataTalksClub GitHub release (examples/nyc_taxi/fake_data.py serves a local stand-in);
- LEGATO_EXAMPLE_OUTPUT: the local folder the parquet files are written to first; default ./data.
"""

import os
from datetime import timedelta
from pathlib import Path

import pandas as pd

from legato import flow, task
from legato.blocks.core import Block
from legato.tasks import task_input_hash

DEFAULT_DATA_URL = (
    "https://github.com/DataTalksClub/nyc-tlc-data/releases/download/"
    "{color}/{color}_tripdata_{year}-{month:02}.csv.gz"
)
BUCKET_BLOCK = "local-file-system/nyc-taxi-bucket"
WAREHOUSE_BLOCK = "sql-warehouse/nyc-taxi-warehouse"
TABLE = "zoom.taxiData"


@task(retries=3, cache_key_fn=task_input_hash, cache_expiration=timedelta(days=1))
def ingest_data(url: str) -> pd.DataFrame:
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
    Path(local_file).parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(local_file, compression="gzip")
    return local_file


@task
def save_to_gcp(path: str, to_path: str, bucket_block: str) -> str:
    """Upload the local parquet file to the bucket"""
    gcs_block = Block.load(bucket_block)
    return gcs_block.upload_from_path(from_path=path, to_path=to_path)


@task(log_prints=True)
def save_to_bq(df: pd.DataFrame, table: str, warehouse_block: str) -> int:
    """Append the frame to the warehouse table, 500,000 rows at a time"""
    warehouse = Block.load(warehouse_block)
    rows = warehouse.write_dataframe(df, table, if_exists="append", chunksize=500_000)
    print(f"appended {rows} rows to {table}")
    return rows


@flow(name="GCP flow", log_prints=True)
def gcp_flow(color: str, year: int, month: int, bucket_block: str = BUCKET_BLOCK,
             warehouse_block: str = WAREHOUSE_BLOCK, table: str = TABLE) -> int:
    dataset_file = f"{color}_tripdata_{year}-{month:02}"
    # read at call time (not import time), so a test or the demo can point it elsewhere
    url_template = os.environ.get("LEGATO_EXAMPLE_DATA_URL", DEFAULT_DATA_URL)
    dataset_url = url_template.format(color=color, year=year, month=month)
    output = Path(os.environ.get("LEGATO_EXAMPLE_OUTPUT", "data"))

    raw_data = ingest_data(dataset_url)
    clean_data = clean_it(raw_data)
    path = save_data_local(clean_data, output / color / dataset_file)
    save_to_gcp(path, f"{color}/{dataset_file}.parquet", bucket_block)
    return save_to_bq(clean_data, table, warehouse_block)


@flow(name="Parent GCP flow", log_prints=True)
def gather_flow(color: str = "yellow", year: int = 2021, months: list[int] = [1, 2, 3],  # noqa: B006
                bucket_block: str = BUCKET_BLOCK, warehouse_block: str = WAREHOUSE_BLOCK,
                table: str = TABLE) -> int:
    total = 0
    for month in months:
        total += gcp_flow(color, year, month, bucket_block, warehouse_block, table)
    print(f"loaded {total} rows for {color} {year}, months {months}")
    return total


if __name__ == "__main__":
    gather_flow("yellow", 2021, [1, 2, 3])
