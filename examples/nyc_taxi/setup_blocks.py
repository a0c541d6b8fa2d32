"""Save the example's blocks and its deployment (the seed's sections 2, 5 and 7).

    python examples/nyc_taxi/setup_blocks.py                 # a local folder and a DuckDB file
    python examples/nyc_taxi/setup_blocks.py --bucket gcs --bucket-name my-bucket \\
        --warehouse bigquery                                 # Google Cloud (credentials below)
    python examples/nyc_taxi/setup_blocks.py --bucket s3 --bucket-name my-bucket \\
        --warehouse postgresql+psycopg://user@host/db

- the bucket block ``nyc-taxi-bucket``: a ``LocalFileSystem`` on ``--data-dir``/bucket by
  default; ``GcsBucket`` (credentials: ``GOOGLE_APPLICATION_CREDENTIALS``'s key file, else
  Google's default credentials) or ``S3Bucket`` (credentials: the AWS environment);
- the warehouse block ``nyc-taxi-warehouse``: a ``SqlWarehouse`` on a DuckDB file in
  ``--data-dir`` by default, any SQLAlchemy URL, or ``BigQueryWarehouse``;
- the deployment ``Parent GCP flow/nyc-taxi-monthly`` of ``gather_flow``: on queue
  ``default``, every month (06:00 UTC on the 2nd, when the previous month's file is out),
  parameters ``color``, ``year``, ``months`` and the two block names.

Blocks and deployment go to the history the settings name (``LEGATO_API_URL`` for a server).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the example is a plain script folder, not a package

from etl_to_bucket_and_warehouse import gather_flow  # noqa: E402

from legato.deployments import Deployment  # noqa: E402
from legato.schedules import CronSchedule  # noqa: E402

BUCKET_NAME, WAREHOUSE_NAME, DEPLOYMENT = "nyc-taxi-bucket", "nyc-taxi-warehouse", "nyc-taxi-monthly"


def bucket_block(kind: str, data_dir: Path, bucket_name: str | None) -> Any:
    if kind == "local":
        from legato.filesystems import LocalFileSystem

        return LocalFileSystem(basepath=str(data_dir / "bucket"))
    if not bucket_name:
        raise SystemExit(f"--bucket {kind} needs --bucket-name (the bucket's name).")
    if kind == "gcs":
        from legato.gcp import GcpCredentials, GcsBucket

        key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        return GcsBucket(bucket=bucket_name, gcp_credentials=GcpCredentials(
            service_account_file=key) if key else GcpCredentials())
    from legato.aws import AwsCredentials, S3Bucket

    return S3Bucket(bucket_name=bucket_name, credentials=AwsCredentials())


def warehouse_block(kind: str, data_dir: Path) -> Any:
    if kind == "bigquery":
        from legato.gcp import BigQueryWarehouse, GcpCredentials

        key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        return BigQueryWarehouse(gcp_credentials=GcpCredentials(service_account_file=key)
                                 if key else GcpCredentials())
    from legato.blocks.warehouse import SqlWarehouse

    url = f"duckdb:///{data_dir / 'warehouse.duckdb'}" if kind == "duckdb" else kind
    return SqlWarehouse(url=url)


def setup(data_dir: Path, *, bucket: str = "local", bucket_name: str | None = None,
          warehouse: str = "duckdb", months: list[int] | None = None, year: int = 2021,
          color: str = "yellow") -> str:
    """Save both blocks and apply the deployment; returns the deployment's id."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    b = bucket_block(bucket, data_dir, bucket_name)
    w = warehouse_block(warehouse, data_dir)
    b.save(BUCKET_NAME, overwrite=True)
    w.save(WAREHOUSE_NAME, overwrite=True)
    deployment = Deployment.build_from_flow(
        flow=gather_flow, name=DEPLOYMENT, work_queue_name="default",
        entrypoint="etl_to_bucket_and_warehouse.py:gather_flow", path=str(HERE),
        parameters={"color": color, "year": year, "months": months or [1, 2, 3],
                    "bucket_block": f"{b.get_block_type_slug()}/{BUCKET_NAME}",
                    "warehouse_block": f"{w.get_block_type_slug()}/{WAREHOUSE_NAME}"},
        schedule=CronSchedule(cron="0 6 2 * *", timezone="UTC"),
        description="The seed's NYC taxi pipeline: download, clean, parquet, bucket, warehouse.",
        tags=["nyc-taxi"],
    )
    return str(deployment.apply())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("data"),
                    help="where the local bucket folder and the DuckDB file go (default ./data)")
    ap.add_argument("--bucket", choices=["local", "gcs", "s3"], default="local")
    ap.add_argument("--bucket-name")
    ap.add_argument("--warehouse", default="duckdb",
                    help="duckdb (default), bigquery, or a SQLAlchemy URL")
    ap.add_argument("--months", type=int, nargs="+", default=[1, 2, 3])
    args = ap.parse_args()
    dep_id = setup(args.data_dir, bucket=args.bucket, bucket_name=args.bucket_name,
                   warehouse=args.warehouse, months=args.months)
    print(f"Saved blocks {BUCKET_NAME!r} and {WAREHOUSE_NAME!r}; deployment "
          f"'Parent GCP flow/{DEPLOYMENT}' ({dep_id}) on queue 'default'.")


if __name__ == "__main__":
    main()
