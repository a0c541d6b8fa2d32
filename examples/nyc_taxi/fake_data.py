"""Generated NYC taxi trip files, and a tiny local web server to download them from.

The example pipeline downloads `{color}_tripdata_{year}-{month:02}.csv.gz` from the DataTalksClub
GitHub releases. Tests and the demo run without internet, so this module writes files of the same
shape (the same 18 columns, plausible values, deterministic for a given color/year/month) and
serves them from 127.0.0.1 under the same path layout as the real URL:

    {base_url}/{color}/{color}_tripdata_{year}-{month:02}.csv.gz

    python examples/nyc_taxi/fake_data.py ./fake --months 1 2 --rows 5000 --serve
"""

from __future__ import annotations

import argparse
import calendar
import functools
import http.server
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = [
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
    "congestion_surcharge",
]


def file_name(color: str, year: int, month: int) -> str:
    """The real data set's file name, e.g. yellow_tripdata_2021-01.csv.gz."""
    return f"{color}_tripdata_{year}-{month:02}.csv.gz"


def make_trips(color: str, year: int, month: int, rows: int = 1000) -> pd.DataFrame:
    """A frame of `rows` plausible taxi trips in that month; the same arguments give the same rows."""
    # A stable seed per (color, year, month): crc32, not hash(), which is salted per process.
    rng = np.random.default_rng(zlib.crc32(f"{color}-{year}-{month}".encode()))

    days = calendar.monthrange(year, month)[1]
    start = pd.Timestamp(year=year, month=month, day=1)
    pickup = start + pd.to_timedelta(rng.integers(0, days * 86_400, rows), unit="s")
    distance = np.round(rng.gamma(shape=1.6, scale=1.9, size=rows), 2)  # miles, mostly short
    minutes = np.maximum(1.0, distance * rng.uniform(2.5, 6.0, rows) + rng.normal(3, 1.5, rows))
    dropoff = pickup + pd.to_timedelta(np.round(minutes * 60), unit="s")

    ratecode = rng.choice([1, 2, 3, 4, 5], size=rows, p=[0.95, 0.025, 0.005, 0.005, 0.015])
    payment = rng.choice([1, 2, 3, 4], size=rows, p=[0.7, 0.27, 0.02, 0.01])
    fare = np.round(2.5 + 2.5 * distance + 0.5 * minutes / 2, 1)
    fare[ratecode == 2] = 52.0  # JFK flat fare
    extra = rng.choice([0.0, 0.5, 1.0, 2.5, 3.0], size=rows)
    mta_tax = np.full(rows, 0.5)
    tip = np.where(payment == 1, np.round(fare * rng.uniform(0.1, 0.3, rows), 2), 0.0)
    tolls = np.where(rng.random(rows) < 0.05, 6.12, 0.0)
    improvement = np.full(rows, 0.3)
    congestion = rng.choice([0.0, 2.5], size=rows, p=[0.2, 0.8])
    total = np.round(fare + extra + mta_tax + tip + tolls + improvement + congestion, 2)

    # Passenger count and rate code are missing on a few rows in the real files too.
    passengers = rng.choice([1, 1, 1, 1, 2, 2, 3, 4, 5, 6], size=rows).astype("float64")
    missing = rng.random(rows) < 0.02
    passengers[missing] = np.nan
    ratecode = ratecode.astype("float64")
    ratecode[missing] = np.nan

    df = pd.DataFrame(
        {
            "VendorID": rng.choice([1, 2], size=rows, p=[0.35, 0.65]),
            "tpep_pickup_datetime": pickup.strftime("%Y-%m-%d %H:%M:%S"),
            "tpep_dropoff_datetime": dropoff.strftime("%Y-%m-%d %H:%M:%S"),
            "passenger_count": passengers,
            "trip_distance": distance,
            "RatecodeID": ratecode,
            "store_and_fwd_flag": rng.choice(["N", "Y"], size=rows, p=[0.98, 0.02]),
            "PULocationID": rng.integers(1, 266, rows),
            "DOLocationID": rng.integers(1, 266, rows),
            "payment_type": payment,
            "fare_amount": fare,
            "extra": extra,
            "mta_tax": mta_tax,
            "tip_amount": tip,
            "tolls_amount": tolls,
            "improvement_surcharge": improvement,
            "total_amount": total,
            "congestion_surcharge": congestion,
        },
        columns=COLUMNS,
    )
    return df.sort_values("tpep_pickup_datetime", ignore_index=True)


def write_month(directory: str | Path, color: str, year: int, month: int, rows: int = 1000) -> Path:
    """Write {directory}/{color}/{color}_tripdata_{year}-{month:02}.csv.gz and return its path."""
    path = Path(directory) / color / file_name(color, year, month)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_trips(color, year, month, rows).to_csv(path, index=False, compression="gzip")
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass  # keep test and demo output clean


def serve(directory: str | Path) -> tuple[str, Callable[[], None]]:
    """Serve `directory` over HTTP on 127.0.0.1 (a free port) from a background thread.

    Returns (base_url, shutdown); files are at f"{base_url}/{color}/{file_name(...)}".
    """
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: any free port
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-taxi-data", daemon=True)
    thread.start()

    def shutdown() -> None:  # safe to call more than once
        if thread.is_alive():
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    host, port = server.server_address[:2]
    return f"http://{host}:{port}", shutdown


def url_template(base_url: str) -> str:
    """The LEGATO_EXAMPLE_DATA_URL template pointing at a server started by serve()."""
    return base_url + "/{color}/{color}_tripdata_{year}-{month:02}.csv.gz"


def main() -> None:
    p = argparse.ArgumentParser(description="Write fake NYC taxi trip files (and serve them).")
    p.add_argument("directory")
    p.add_argument("--color", default="yellow")
    p.add_argument("--year", type=int, default=2021)
    p.add_argument("--months", type=int, nargs="+", default=[1])
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--serve", action="store_true", help="serve the folder until Ctrl-C")
    args = p.parse_args()
    for m in args.months:
        print(write_month(args.directory, args.color, args.year, m, args.rows))
    if args.serve:
        base, shutdown = serve(args.directory)
        print(f"export LEGATO_EXAMPLE_DATA_URL='{url_template(base)}'   (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            shutdown()


if __name__ == "__main__":
    main()
