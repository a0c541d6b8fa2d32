"""AWS blocks: :class:`AwsCredentials` and :class:`S3Bucket` (``from legato.aws import ...``, as
``from prefect_aws import ...``).

Importing this package needs only Legato; boto3 (the ``legato[aws]`` extra) is imported when a
block first talks to AWS, and its absence raises :class:`~legato.exceptions.MissingExtraError`.
"""

from __future__ import annotations

from .credentials import AwsClientParameters, AwsCredentials
from .s3 import DataFrameSerializationFormat, S3Bucket

__all__ = ["AwsClientParameters", "AwsCredentials", "DataFrameSerializationFormat", "S3Bucket"]
