"""GCP credentials: a block that makes Google Cloud Storage and BigQuery clients.

``GcpCredentials(service_account_info={...}).get_cloud_storage_client()`` gives a
``google.cloud.storage.Client`` authorised by the service-account key; with neither a key nor a key
file, Google's Application Default Credentials are used (``GOOGLE_APPLICATION_CREDENTIALS``,
``gcloud auth application-default login``, the metadata server on GCP).

Emulators: with ``STORAGE_EMULATOR_HOST`` set (for example ``http://127.0.0.1:9023``) the storage
client talks to that endpoint with anonymous credentials, and with ``BIGQUERY_EMULATOR_HOST`` set
the BigQuery client does the same. The block's key is then neither loaded nor sent anywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..blocks._extras import require
from ..blocks.core import Block
from ..blocks.fields import SecretDict
from ..exceptions import BlockError

STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
BIGQUERY_EMULATOR_ENV = "BIGQUERY_EMULATOR_HOST"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def emulator_endpoint(env_var: str) -> str | None:
    """The emulator URL named by ``env_var`` (``http://`` added when it has no scheme), or None."""
    host = os.environ.get(env_var, "").strip()
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


class GcpCredentials(Block):
    """Credentials to reach Google Cloud: a service-account key (as a dict or a file), or
    Google's Application Default Credentials when both are empty.

    The key is stored encrypted and shown as ``********`` in listings. Clients for Cloud Storage
    and BigQuery come from :meth:`get_cloud_storage_client` and :meth:`get_bigquery_client`.
    """

    _block_type_name = "GCP Credentials"
    _documentation_url = "https://cloud.google.com/docs/authentication/provide-credentials-adc"
    _code_example = (
        "from legato.gcp import GcpCredentials\n"
        'gcp_credentials_block = GcpCredentials.load("BLOCK_NAME")'
    )

    service_account_file: Path | None = Field(
        default=None,
        description="Path to a service-account JSON key file (checked when the block is used).")
    service_account_info: SecretDict | None = Field(
        default=None,
        description="The contents of a service-account JSON key file, as an object.")
    project: str | None = Field(
        default=None,
        description="The GCP project clients use; the key's project_id when empty.")

    @field_validator("service_account_info", mode="before")
    @classmethod
    def _parse_json_info(cls, value: Any) -> Any:
        # the key is often pasted as the JSON text of the key file
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(
                    "service_account_info is not valid JSON: paste the whole contents of the "
                    "service-account key file, or give it as a dict") from None
        if value is not None and not isinstance(value, (dict, SecretDict)):
            raise ValueError("service_account_info must be the key file's contents as a dict")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> GcpCredentials:
        if self.service_account_info is not None and self.service_account_file is not None:
            raise ValueError(
                "Give either service_account_info or service_account_file, not both")
        if self.project is None and self.service_account_info is not None:
            self.project = self.service_account_info.get_secret_value().get("project_id")
        return self

    # -- credentials ---------------------------------------------------------------------------
    def _key_file(self) -> Path:
        path = Path(self.service_account_file or "").expanduser()
        if not path.is_file():
            raise BlockError(
                f"The service-account key file {str(path)!r} named by this GCP Credentials "
                "block does not exist on this machine. Put the key file there, or save the "
                "block with service_account_info (the key's contents) instead.")
        return path

    def get_credentials_from_service_account(self) -> Any:
        """Google credentials for the block's service account (``google.oauth2``), built
        offline from the key; without a key, Application Default Credentials."""
        service_account = require("google.oauth2.service_account", "gcp", "GcpCredentials")
        creds_cls = service_account.Credentials
        if self.service_account_info is not None:
            try:
                return creds_cls.from_service_account_info(
                    self.service_account_info.get_secret_value(), scopes=[CLOUD_PLATFORM_SCOPE])
            except (ValueError, KeyError, TypeError) as exc:
                raise BlockError(
                    "service_account_info is not a usable service-account key "
                    f"({type(exc).__name__}: {exc}). Paste the whole JSON key file downloaded "
                    "from the GCP console (type, project_id, private_key, client_email, "
                    "token_uri, ...).") from None
        if self.service_account_file is not None:
            path = self._key_file()
            try:
                return creds_cls.from_service_account_file(str(path),
                                                           scopes=[CLOUD_PLATFORM_SCOPE])
            except (ValueError, KeyError, TypeError) as exc:
                raise BlockError(
                    f"The file {str(path)!r} is not a usable service-account key "
                    f"({type(exc).__name__}: {exc}). Download a JSON key for the service "
                    "account from the GCP console.") from None
        return self._default_credentials()

    def _default_credentials(self) -> Any:
        google_auth = require("google.auth", "gcp", "GcpCredentials")
        exceptions = require("google.auth.exceptions", "gcp", "GcpCredentials")
        try:
            credentials, _project = google_auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        except exceptions.DefaultCredentialsError:
            raise BlockError(
                "No GCP credentials: this GCP Credentials block has neither "
                "service_account_info nor service_account_file, and Google's Application "
                "Default Credentials are not set up here. Save the block with the service "
                "account's key, set GOOGLE_APPLICATION_CREDENTIALS to a key file, or (for a "
                f"local emulator) set {STORAGE_EMULATOR_ENV} / {BIGQUERY_EMULATOR_ENV}.") from None
        return credentials

    def get_project(self, project: str | None = None) -> str | None:
        """The project clients use: ``project`` if given, else the block's, else the key's."""
        if project or self.project:
            return project or self.project
        if self.service_account_file is not None:
            path = Path(self.service_account_file).expanduser()
            if path.is_file():
                try:
                    return json.loads(path.read_text()).get("project_id")
                except (ValueError, OSError, AttributeError):
                    return None
        return None

    # -- clients -------------------------------------------------------------------------------
    def get_cloud_storage_client(self, project: str | None = None) -> Any:
        """A ``google.cloud.storage.Client``; on ``STORAGE_EMULATOR_HOST`` when that is set."""
        storage = require("google.cloud.storage", "gcp", "GcpCredentials")
        endpoint = emulator_endpoint(STORAGE_EMULATOR_ENV)
        if endpoint is not None:
            return storage.Client(project=self.get_project(project),
                                  credentials=_anonymous(),
                                  client_options={"api_endpoint": endpoint})
        credentials = self.get_credentials_from_service_account()
        return storage.Client(project=self.get_project(project) or _project_of(credentials),
                              credentials=credentials)

    def get_bigquery_client(self, project: str | None = None,
                            location: str | None = None) -> Any:
        """A ``google.cloud.bigquery.Client``; on ``BIGQUERY_EMULATOR_HOST`` when that is set."""
        bigquery = require("google.cloud.bigquery", "gcp", "GcpCredentials")
        endpoint = emulator_endpoint(BIGQUERY_EMULATOR_ENV)
        if endpoint is not None:
            chosen = self.get_project(project)
            if not chosen:
                raise BlockError(
                    f"{BIGQUERY_EMULATOR_ENV} is set, so the BigQuery client needs a project "
                    "name: set `project` on the GCP Credentials block (or pass project=...).")
            return bigquery.Client(project=chosen, credentials=_anonymous(), location=location,
                                   client_options={"api_endpoint": endpoint})
        credentials = self.get_credentials_from_service_account()
        return bigquery.Client(project=self.get_project(project) or _project_of(credentials),
                               credentials=credentials, location=location)

    def get_client(self, client_type: str, **kwargs: Any) -> Any:
        """``get_client("cloud_storage")`` / ``get_client("bigquery")``: the client by name."""
        getters = {"cloud_storage": self.get_cloud_storage_client,
                   "bigquery": self.get_bigquery_client}
        key = getattr(client_type, "value", client_type)
        if key not in getters:
            raise BlockError(
                f"Unknown GCP client type {client_type!r}: use one of {sorted(getters)}.")
        return getters[key](**kwargs)

    def get_access_token(self) -> str:
        """A fresh OAuth access token for the credentials (this asks Google's token server)."""
        transport = require("google.auth.transport.requests", "gcp", "GcpCredentials")
        credentials = self.get_credentials_from_service_account()
        credentials.refresh(transport.Request())
        return credentials.token


def _anonymous() -> Any:
    return require("google.auth.credentials", "gcp", "GcpCredentials").AnonymousCredentials()


def _project_of(credentials: Any) -> str | None:
    return getattr(credentials, "project_id", None) or getattr(
        credentials, "quota_project_id", None)
