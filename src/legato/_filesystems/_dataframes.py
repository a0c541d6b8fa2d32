"""How the bucket blocks (``S3Bucket``, ``GcsBucket``) write a pandas DataFrame as an object."""

from __future__ import annotations

import io
from enum import Enum
from typing import Any

from ..blocks._extras import require
from ..exceptions import BlockError


class DataFrameSerializationFormat(Enum):
    """A DataFrame's file format as an object: (format, compression, content type, suffix)."""

    CSV = ("csv", None, "text/csv", ".csv")
    CSV_GZIP = ("csv", "gzip", "application/x-gzip", ".csv.gz")
    PARQUET = ("parquet", None, "application/octet-stream", ".parquet")
    PARQUET_SNAPPY = ("parquet", "snappy", "application/octet-stream", ".snappy.parquet")
    PARQUET_GZIP = ("parquet", "gzip", "application/octet-stream", ".gz.parquet")

    @property
    def format(self) -> str:
        return self.value[0]

    @property
    def compression(self) -> str | None:
        return self.value[1]

    @property
    def content_type(self) -> str:
        return self.value[2]

    @property
    def suffix(self) -> str:
        return self.value[3]

    def fix_extension_with(self, path: str) -> str:
        """``path`` ending in this format's suffix: a known DataFrame suffix is replaced, any
        other name gets the suffix appended (``df.csv`` -> ``df.parquet``, ``df`` -> ``df.csv``)."""
        path = str(path)
        for known in sorted((f.suffix for f in type(self)), key=len, reverse=True):
            if path.endswith(known):
                return path[: -len(known)] + self.suffix
        return path + self.suffix

    @classmethod
    def parse(cls, value: str | DataFrameSerializationFormat) -> DataFrameSerializationFormat:
        if isinstance(value, cls):
            return value
        try:
            return cls[str(value).strip().upper().replace("-", "_")]
        except KeyError:
            names = ", ".join(repr(f.name.lower()) for f in cls)
            raise BlockError(
                f"Unknown serialization_format {value!r}: use one of {names}.") from None


def dataframe_file(df: Any, serialization_format: str | DataFrameSerializationFormat, user: str
                   ) -> tuple[io.BytesIO, DataFrameSerializationFormat]:
    """The DataFrame (without its index) written in the format, ready to upload."""
    fmt = DataFrameSerializationFormat.parse(serialization_format)
    buffer = io.BytesIO()
    if fmt.format == "parquet":
        require("pyarrow", "dataframes", f"{user}.upload_from_dataframe (parquet)")
        df.to_parquet(buffer, index=False, compression=fmt.compression)
    else:
        df.to_csv(buffer, index=False, compression=fmt.compression)
    buffer.seek(0)
    return buffer, fmt
