"""AWS credentials: a block that makes boto3 sessions and clients.

``AwsCredentials(...).get_s3_client()`` gives a boto3 S3 client signed with the block's keys (or,
for fields left empty, with boto3's own lookup: environment, ``~/.aws``, instance role).

Emulators: boto3 (>= 1.28) reads ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>`` (for
example ``AWS_ENDPOINT_URL_S3``) itself, so with one set an unchanged block talks to the emulator.
An ``endpoint_url`` in ``aws_client_parameters`` wins over the environment. The block's keys are
used as they are, to sign requests to whichever endpoint is in force; a request carries the access
key id and a signature, never the secret key, and goes only to that endpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ..blocks._extras import require
from ..blocks.core import Block
from ..exceptions import BlockError

_CLIENT_LOCK = threading.Lock()  # boto3 sessions are not thread-safe while they build clients
# clients by (service, digest of the block's fields and the AWS_* environment): shared by equal
# blocks, and kept out of the blocks themselves so a block still pickles and copies
_CLIENTS: OrderedDict[tuple[str, str], Any] = OrderedDict()
_MAX_CACHED_CLIENTS = 16


class AwsClientParameters(BaseModel):
    """Extra parameters for the boto3 clients a block creates (all optional)."""

    model_config = ConfigDict(extra="forbid")

    api_version: str | None = Field(
        default=None, description="The API version to use; botocore's latest when empty.")
    use_ssl: bool = Field(default=True, description="Whether to use SSL (HTTPS).")
    verify: bool = Field(
        default=True, description="Whether to verify SSL certificates.")
    verify_cert_path: str | None = Field(
        default=None, description="A CA certificate bundle to verify SSL certificates with.")
    endpoint_url: str | None = Field(
        default=None,
        description="The URL to send requests to (an S3-compatible server or an emulator). "
                    "When empty, boto3 uses AWS_ENDPOINT_URL_<SERVICE> / AWS_ENDPOINT_URL if "
                    "set, else the AWS endpoint of the region.")
    config: dict[str, Any] | None = Field(
        default=None,
        description="Keyword arguments for botocore.config.Config, for example "
                    "{'retries': {'max_attempts': 5}, 's3': {'addressing_style': 'path'}}.")

    def get_params_override(self) -> dict[str, Any]:
        """The keyword arguments these parameters add to ``session.client(...)``."""
        params: dict[str, Any] = {}
        if self.api_version is not None:
            params["api_version"] = self.api_version
        if not self.use_ssl:
            params["use_ssl"] = False
        if self.verify_cert_path is not None:
            params["verify"] = self.verify_cert_path
        elif not self.verify:
            params["verify"] = False
        if self.endpoint_url:
            params["endpoint_url"] = self.endpoint_url
        if self.config:
            botocore_config = require("botocore.config", "aws", "AwsClientParameters")
            params["config"] = botocore_config.Config(**self.config)
        return params


class AwsCredentials(Block):
    """Credentials and settings to reach AWS (or an S3-compatible server) with boto3.

    Fields left empty fall back to boto3's own lookup: environment variables, the shared
    ``~/.aws`` files, then the instance or task role.
    """

    _block_type_name = "AWS Credentials"
    _documentation_url = "https://boto3.amazonaws.com/v1/documentation/api/latest/guide/credentials.html"
    _code_example = (
        "from legato.aws import AwsCredentials\n\n"
        'aws_credentials = AwsCredentials.load("BLOCK_NAME")\n'
        "s3_client = aws_credentials.get_s3_client()"
    )

    aws_access_key_id: str | None = Field(
        default=None, description="The access key id; boto3's lookup when empty.",
        title="AWS Access Key ID")
    aws_secret_access_key: SecretStr | None = Field(
        default=None, description="The secret access key that goes with the access key id.",
        title="AWS Access Key Secret")
    aws_session_token: SecretStr | None = Field(
        default=None, description="A session token, for temporary credentials.",
        title="AWS Session Token")
    profile_name: str | None = Field(
        default=None, description="A profile of the shared ~/.aws files to use.")
    region_name: str | None = Field(
        default=None, description="The AWS region; AWS_DEFAULT_REGION or the profile's when empty.")
    aws_client_parameters: AwsClientParameters = Field(
        default_factory=AwsClientParameters,
        description="Extra parameters for the clients: endpoint_url, verify, use_ssl, config.")

    def get_boto3_session(self) -> Any:
        """A new ``boto3.Session`` with this block's keys, profile and region."""
        boto3 = require("boto3", "aws", "AwsCredentials")
        botocore_exceptions = require("botocore.exceptions", "aws", "AwsCredentials")
        secret = self.aws_secret_access_key
        token = self.aws_session_token
        try:
            return boto3.Session(
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=secret.get_secret_value() if secret else None,
                aws_session_token=token.get_secret_value() if token else None,
                profile_name=self.profile_name,
                region_name=self.region_name,
            )
        except botocore_exceptions.ProfileNotFound:
            raise BlockError(
                f"The AWS profile {self.profile_name!r} is not in the shared AWS config files "
                "(~/.aws/config, ~/.aws/credentials, or AWS_CONFIG_FILE): create it, or clear "
                "profile_name to use the keys or the environment.") from None

    def get_client(self, client_type: str) -> Any:
        """A boto3 client for ``client_type`` ("s3", "secretsmanager", ...), built once for
        these field values, service and AWS_* environment, and reused after."""
        if not isinstance(client_type, str):  # an enum member, as Prefect's ClientType
            client_type = str(getattr(client_type, "value", client_type))
        key = (client_type, self._fingerprint())
        with _CLIENT_LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                session = self.get_boto3_session()
                client = session.client(
                    client_type, **self.aws_client_parameters.get_params_override())
                _CLIENTS[key] = client
                while len(_CLIENTS) > _MAX_CACHED_CLIENTS:
                    _CLIENTS.popitem(last=False)
            else:
                _CLIENTS.move_to_end(key)
        return client

    def get_s3_client(self) -> Any:
        """A boto3 S3 client."""
        return self.get_client("s3")

    def get_secrets_manager_client(self) -> Any:
        """A boto3 Secrets Manager client."""
        return self.get_client("secretsmanager")

    def _fingerprint(self) -> str:
        """A digest of the fields and the AWS_* environment: a client built under other values
        is not reused (the endpoint and keys boto3 resolves depend on both)."""
        fields = self.model_dump(mode="json")
        for name in ("aws_secret_access_key", "aws_session_token"):
            secret = getattr(self, name)
            fields[name] = secret.get_secret_value() if secret else None
        env = sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
        text = json.dumps([fields, env], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()
