"""BigQuery: the ``BigQueryWarehouse`` block (credentials, a project, a location).

``BigQueryWarehouse(gcp_credentials=creds).write_dataframe(df, "zoom.taxiData")`` appends a pandas
DataFrame to a table in load jobs of ``chunksize`` rows (what ``df.to_gbq(..., chunksize=500_000,
if_exists="append")`` does); ``fetch_all(query)`` runs a query and gives its rows as tuples.
With ``BIGQUERY_EMULATOR_HOST`` set, every request goes to that endpoint without credentials (see
:mod:`legato.gcp.credentials`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import Field, PrivateAttr

from ..blocks._extras import require
from ..blocks.core import Block
from ..exceptions import BlockError
from .cloud_storage import _logger
from .credentials import GcpCredentials

IF_EXISTS = ("fail", "replace", "append")
_PROJECT_RE = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{0,62}$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_BAD_TABLE_CHARS = re.compile(r"[.`\n\r\t]")


def _quiet_pandas_gbq_notice() -> None:
    # google-cloud-bigquery notes on every DataFrame load that it means to hand DataFrame loading
    # over to the pandas-gbq package; loads work without it, and a user cannot act on the notice
    for message, category in (
            ("Loading pandas DataFrame into BigQuery will require pandas-gbq", FutureWarning),
            ("Loading DataFrames via google-cloud-bigquery is deprecated",
             PendingDeprecationWarning)):
        warnings.filterwarnings("ignore", message=message, category=category)


def parse_table(table: str, default_project: str | None) -> tuple[str, str, str]:
    """``dataset.table`` or ``project.dataset.table`` -> (project, dataset, table)."""
    how = ("write it as DATASET.TABLE (for example 'zoom.taxiData') or "
           "PROJECT.DATASET.TABLE")
    if not isinstance(table, str):
        raise BlockError(f"The BigQuery table must be a string, not {type(table).__name__}: {how}.")
    parts = table.strip().strip("`").split(".")
    if len(parts) == 2:
        project, (dataset, name) = default_project, parts
    elif len(parts) == 3:
        project, dataset, name = parts
    else:
        raise BlockError(f"{table!r} is not a BigQuery table name: {how}.")
    if not dataset or not name or _BAD_TABLE_CHARS.search(name):
        raise BlockError(f"{table!r} is not a BigQuery table name: {how}.")
    if not _DATASET_RE.match(dataset):
        raise BlockError(
            f"{dataset!r} (in {table!r}) is not a BigQuery dataset name: a dataset name has only "
            f"letters, digits and underscores; {how}.")
    if not project:
        raise BlockError(
            f"No project for the BigQuery table {table!r}: write it as PROJECT.DATASET.TABLE, "
            "or set `project` on the BigQuery Warehouse block or its GCP credentials.")
    if not _PROJECT_RE.match(project):
        raise BlockError(
            f"{project!r} (in {table!r}) is not a GCP project id: lowercase letters, digits "
            "and hyphens, starting with a letter.")
    return project, dataset, name


def chunk_bounds(n_rows: int, chunksize: int | None) -> list[tuple[int, int]]:
    """The (start, stop) row ranges a frame of ``n_rows`` is loaded in: ``chunksize`` rows each,
    the last one shorter; a single range when ``chunksize`` is None (an empty frame gives one
    empty range, so its schema is still loaded)."""
    if chunksize is None:
        return [(0, n_rows)]
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise BlockError(f"chunksize must be a positive number of rows (or None), "
                         f"not {chunksize!r}.")
    if n_rows == 0:
        return [(0, 0)]
    return [(start, min(start + chunksize, n_rows)) for start in range(0, n_rows, chunksize)]


class BigQueryWarehouse(Block):
    """A BigQuery warehouse: append pandas DataFrames to tables in chunks and run queries.

    Rows come back as tuples. ``fetch_one`` / ``fetch_many`` continue where the previous call
    with the same query stopped, until ``reset_cursors()`` or ``close()``.
    """

    _block_type_name = "BigQuery Warehouse"
    _documentation_url = "https://cloud.google.com/bigquery/docs/introduction"
    _code_example = (
        "from legato.gcp import BigQueryWarehouse\n"
        'warehouse = BigQueryWarehouse.load("BLOCK_NAME")\n'
        'warehouse.write_dataframe(df, "dataset.table", if_exists="append", chunksize=500_000)\n'
        'rows = warehouse.fetch_all("SELECT COUNT(*) FROM dataset.table")'
    )

    gcp_credentials: GcpCredentials = Field(
        default_factory=GcpCredentials,
        description="The credentials to authenticate with GCP.")
    project: str | None = Field(
        default=None,
        description="The project queries run in and tables default to; the credentials' "
                    "project when empty.")
    location: str | None = Field(
        default=None, description="Where jobs run, for example 'US' or 'europe-west6'.")
    fetch_size: int = Field(
        default=1, ge=1, description="How many rows fetch_many returns when no size is given.")

    _connection: Any = PrivateAttr(default=None)
    _cursors: dict[Any, Any] = PrivateAttr(default_factory=dict)

    def get_client(self) -> Any:
        """A ``google.cloud.bigquery.Client`` for this warehouse's project and location."""
        return self.gcp_credentials.get_bigquery_client(project=self.project,
                                                        location=self.location)

    def _project(self) -> str | None:
        return self.project or self.gcp_credentials.get_project()

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        api = require("google.api_core.exceptions", "gcp", "BigQueryWarehouse")
        auth = require("google.auth.exceptions", "gcp", "BigQueryWarehouse")
        requests_exc = require("requests.exceptions", "gcp", "BigQueryWarehouse")
        dbapi_exc = require("google.cloud.bigquery.dbapi.exceptions", "gcp", "BigQueryWarehouse")
        try:
            yield
        except api.NotFound as exc:
            raise BlockError(
                f"BigQuery could not {action}: {exc.message}. Check that the dataset exists "
                "(bq mk DATASET, or the GCP console) and the names are right.") from None
        except (api.Forbidden, api.Unauthorized) as exc:
            raise BlockError(
                f"BigQuery refused to {action}: {exc.message}. Check that the service account "
                "of the block's credentials may use this project and dataset.") from None
        except api.GoogleAPICallError as exc:
            raise BlockError(f"BigQuery could not {action}: {exc}") from None
        except dbapi_exc.Error as exc:
            raise BlockError(f"BigQuery could not {action}: {exc}") from None
        except (auth.RefreshError, auth.TransportError) as exc:
            raise BlockError(
                f"Could not {action}: getting an access token for the block's credentials "
                f"failed ({exc}).") from None
        except requests_exc.ConnectionError as exc:
            raise BlockError(f"Could not {action}: BigQuery is not reachable ({exc}).") from None

    # -- loading -------------------------------------------------------------------------------
    def write_dataframe(self, df: Any, table: str, if_exists: str = "append",
                        chunksize: int | None = 500_000) -> int:
        """Load the pandas DataFrame ``df`` (without its index) into ``table``
        (``dataset.table`` or ``project.dataset.table``), one load job per ``chunksize`` rows;
        returns the number of rows loaded.

        ``if_exists``: ``"append"`` adds the rows (the table is created when missing),
        ``"replace"`` replaces the table's rows and schema, ``"fail"`` refuses an existing table.
        """
        if if_exists not in IF_EXISTS:
            raise BlockError(f"if_exists must be one of {', '.join(IF_EXISTS)}, "
                             f"not {if_exists!r}.")
        project, dataset, name = parse_table(table, self._project())
        bounds = chunk_bounds(len(df), chunksize)
        bigquery = require("google.cloud.bigquery", "gcp", "BigQueryWarehouse")
        require("pyarrow", "gcp", "BigQueryWarehouse.write_dataframe")
        destination = f"{project}.{dataset}.{name}"
        client = self.get_client()
        write = bigquery.WriteDisposition
        first = {"append": write.WRITE_APPEND, "replace": write.WRITE_TRUNCATE,
                 "fail": write.WRITE_EMPTY}[if_exists]
        if if_exists == "fail" and self._table_exists(client, destination):
            raise BlockError(
                f"The BigQuery table {destination} already exists and if_exists='fail'. Use "
                "if_exists='append' to add rows or 'replace' to overwrite it.")
        _quiet_pandas_gbq_notice()
        log = _logger()
        for i, (start, stop) in enumerate(bounds):
            config = bigquery.LoadJobConfig(
                write_disposition=first if i == 0 else write.WRITE_APPEND,
                create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED)
            with self._errors(f"load rows {start}-{stop} into {destination}"):
                job = client.load_table_from_dataframe(
                    df.iloc[start:stop], destination, job_config=config,
                    location=self.location)
                job.result()
            log.info("Loaded rows %d-%d of %d into BigQuery table %s (chunk %d of %d).",
                     start, stop, len(df), destination, i + 1, len(bounds))
        return len(df)

    def _table_exists(self, client: Any, destination: str) -> bool:
        api = require("google.api_core.exceptions", "gcp", "BigQueryWarehouse")
        with self._errors(f"look up the table {destination}"):
            try:
                client.get_table(destination)
            except api.NotFound:
                return False
        return True

    # -- queries -------------------------------------------------------------------------------
    def get_connection(self) -> Any:
        """The DB-API connection the fetch methods use (made on first use)."""
        if self._connection is None:
            dbapi = require("google.cloud.bigquery.dbapi", "gcp", "BigQueryWarehouse")
            self._connection = dbapi.connect(client=self.get_client(),
                                             prefer_bqstorage_client=False)
        return self._connection

    def _run(self, operation: str, parameters: Any, **options: Any) -> Any:
        cursor = self.get_connection().cursor()
        with self._errors("run the query"):
            cursor.execute(operation, parameters=parameters, **options)
        return cursor

    def _cursor_for(self, operation: str, parameters: Any, **options: Any) -> Any:
        key = (operation, repr(parameters), repr(sorted(options.items())))
        if key not in self._cursors:
            self._cursors[key] = self._run(operation, parameters, **options)
        return self._cursors[key]

    def fetch_all(self, operation: str, parameters: dict[str, Any] | None = None,
                  **execution_options: Any) -> list[tuple[Any, ...]]:
        """All rows of the query ``operation`` (parameters in ``%(name)s`` style)."""
        cursor = self._run(operation, parameters, **execution_options)
        try:
            with self._errors("fetch the rows"):
                return [tuple(row.values()) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def fetch_one(self, operation: str, parameters: dict[str, Any] | None = None,
                  **execution_options: Any) -> tuple[Any, ...] | None:
        """The next row of the query (the first on the first call); None when none is left."""
        cursor = self._cursor_for(operation, parameters, **execution_options)
        with self._errors("fetch a row"):
            row = cursor.fetchone()
        return None if row is None else tuple(row.values())

    def fetch_many(self, operation: str, parameters: dict[str, Any] | None = None,
                   size: int | None = None, **execution_options: Any) -> list[tuple[Any, ...]]:
        """The next ``size`` rows (``fetch_size`` when omitted) of the query."""
        cursor = self._cursor_for(operation, parameters, **execution_options)
        with self._errors("fetch rows"):
            rows = cursor.fetchmany(size=size or self.fetch_size)
        return [tuple(row.values()) for row in rows]

    def execute(self, operation: str, parameters: dict[str, Any] | None = None,
                **execution_options: Any) -> None:
        """Run a statement (DDL or DML) and wait for it to finish."""
        self._run(operation, parameters, **execution_options).close()

    def reset_cursors(self) -> None:
        """Forget where ``fetch_one`` / ``fetch_many`` stopped."""
        for cursor in self._cursors.values():
            cursor.close()
        self._cursors.clear()

    def close(self) -> None:
        """Close the cursors and the connection."""
        self.reset_cursors()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> BigQueryWarehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
