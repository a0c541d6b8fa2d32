"""Google Cloud blocks: ``from legato.gcp import GcsBucket, GcpCredentials, BigQueryWarehouse``.

The port of ``prefect_gcp``: the same block types, fields and methods. Importing this package needs
only pydantic; the Google SDKs (``pip install 'legato[gcp]'``) are imported when a block is used.
"""

from .bigquery import BigQueryWarehouse
from .cloud_storage import DataFrameSerializationFormat, GcsBucket
from .credentials import GcpCredentials

__all__ = ["BigQueryWarehouse", "DataFrameSerializationFormat", "GcpCredentials", "GcsBucket"]
