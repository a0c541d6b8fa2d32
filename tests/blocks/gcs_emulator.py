"""Local Google Cloud endpoints for tests/blocks/test_gcp.py, all on 127.0.0.1 and a free port:

- :class:`GcsEmulator`: the ``gcp-storage-emulator`` package's Cloud Storage JSON API (in memory),
  a real emulator that stores the objects it is sent.
- :class:`RecordingServer`: NOT an emulator. A small HTTP server that records every request it gets
  (method, path, headers, body) and answers the least JSON the BigQuery client needs to finish a
  load job or a query. It lets tests see what the real ``google-cloud-bigquery`` client sends and
  where (BigQuery itself cannot run offline).
- :func:`service_account_info`: a throwaway service-account key with a fresh RSA key.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def _wait_http(url: str, what: str, deadline_s: float = 15.0) -> None:
    """Poll ``url`` until the server answers any HTTP status (or fail at the deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not answer at {url}") from None
            time.sleep(0.01)


class GcsEmulator:
    """gcp-storage-emulator in a thread of this process, in memory, on a free loopback port."""

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        self.server = create_server("127.0.0.1", 0, in_memory=True)
        self.server.start()  # returns once the socket is bound
        # port 0 picks a free port; the emulator keeps its HTTPServer on the API thread
        self.port = self.server._api._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        _wait_http(f"{self.url}/storage/v1/b?project=test", "the GCS emulator")

    def wipe(self) -> None:
        self.server.wipe()

    def stop(self) -> None:
        self.server.stop()


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Upload:
    """One load job's upload: its job configuration and the data file sent."""

    job: dict[str, Any]
    data: bytes


@dataclass
class _State:
    requests: list[Recorded] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    resumable: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: set[str] = field(default_factory=set)  # "project.dataset.table" that exist
    missing_datasets: set[str] = field(default_factory=set)  # "project.dataset" -> 404 on load
    query_schema: list[dict[str, str]] = field(default_factory=list)
    query_rows: list[list[Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Any = field(default_factory=lambda: itertools.count(1))


class RecordingServer:
    """Records requests; answers BigQuery load jobs, job lookups, table lookups and queries."""

    def __init__(self) -> None:
        self.state = _State()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        _wait_http(f"{self.url}/ready", "the recording server")
        self.clear()

    @property
    def requests(self) -> list[Recorded]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def uploads(self) -> list[Upload]:
        with self.state.lock:
            return list(self.state.uploads)

    def clear(self) -> None:
        with self.state.lock:
            self.state.requests.clear()
            self.state.uploads.clear()
            self.state.resumable.clear()
            self.state.tables.clear()
            self.state.missing_datasets.clear()
            self.state.query_schema = []
            self.state.query_rows = []

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


_TABLE = re.compile(r"^/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)$")
_JOB = re.compile(r"^/bigquery/v2/projects/([^/]+)/jobs/([^/]+)$")
_QUERY = re.compile(r"^/bigquery/v2/projects/([^/]+)/queries$")
_UPLOAD = re.compile(r"^/upload/bigquery/v2/projects/([^/]+)/jobs$")


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def _record(self) -> Recorded:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        rec = Recorded(self.command, parts.path, parse_qs(parts.query),
                       {k.lower(): v for k, v in self.headers.items()}, body)
        with self.state.lock:
            self.state.requests.append(rec)
        return rec

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self, message: str) -> None:
        self._send(404, {"error": {"code": 404, "message": message, "status": "NOT_FOUND",
                                   "errors": [{"reason": "notFound", "message": message}]}})

    def _job(self, project: str, job_id: str, configuration: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "bigquery#job", "id": f"{project}:US.{job_id}",
                "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
                "configuration": configuration, "status": {"state": "DONE"},
                "statistics": {"creationTime": "1700000000000", "startTime": "1700000000000",
                               "endTime": "1700000000001"}}

    def _finish_upload(self, project: str, job: dict[str, Any], data: bytes) -> None:
        load = job.get("configuration", {}).get("load", {})
        dest = load.get("destinationTable", {})
        dataset = f"{dest.get('projectId')}.{dest.get('datasetId')}"
        if dataset in self.state.missing_datasets:
            self._not_found(f"Not found: Dataset {dest.get('projectId')}:{dest.get('datasetId')}")
            return
        with self.state.lock:
            self.state.uploads.append(Upload(job, data))
            self.state.tables.add(f"{dataset}.{dest.get('tableId')}")
        job_id = job.get("jobReference", {}).get("jobId") or f"job{next(self.state.ids)}"
        self._send(200, self._job(project, job_id, job.get("configuration", {})))

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        rec = self._record()
        if m := _TABLE.match(rec.path):
            project, dataset, table = m.groups()
            if f"{project}.{dataset}.{table}" in self.state.tables:
                self._send(200, {"kind": "bigquery#table",
                                 "tableReference": {"projectId": project, "datasetId": dataset,
                                                    "tableId": table},
                                 "schema": {"fields": []}})
            else:
                self._not_found(f"Not found: Table {project}:{dataset}.{table}")
        elif m := _JOB.match(rec.path):
            self._send(200, self._job(m.group(1), m.group(2), {}))
        else:
            self._not_found(f"Not found: {rec.path}")

    def do_POST(self) -> None:  # noqa: N802
        rec = self._record()
        upload_type = (rec.query.get("uploadType") or [""])[0]
        if (m := _UPLOAD.match(rec.path)) and upload_type == "multipart":
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + rec.headers["content-type"].encode() + b"\r\n\r\n" + rec.body)
            meta, data = [p.get_payload(decode=True) for p in msg.iter_parts()]
            self._finish_upload(m.group(1), json.loads(meta), data)
        elif (m := _UPLOAD.match(rec.path)) and upload_type == "resumable":
            upload_id = f"u{next(self.state.ids)}"
            with self.state.lock:
                self.state.resumable[upload_id] = {"project": m.group(1),
                                                   "job": json.loads(rec.body), "data": b""}
            location = f"{rec.path}?uploadType=resumable&upload_id={upload_id}"
            self._send(200, {}, {"Location": f"http://{self.headers['Host']}{location}"})
        elif m := _QUERY.match(rec.path):
            job_id = f"query{next(self.state.ids)}"
            rows = [{"f": [{"v": None if v is None else str(v)} for v in row]}
                    for row in self.state.query_rows]
            self._send(200, {"kind": "bigquery#queryResponse", "jobComplete": True,
                             "jobReference": {"projectId": m.group(1), "jobId": job_id,
                                              "location": "US"},
                             "schema": {"fields": self.state.query_schema},
                             "rows": rows, "totalRows": str(len(rows))})
        else:
            self._not_found(f"Not found: {rec.path}")

    def do_PUT(self) -> None:  # noqa: N802
        rec = self._record()
        upload_id = (rec.query.get("upload_id") or [""])[0]
        entry = self.state.resumable.get(upload_id)
        if entry is None:
            self._not_found(f"Not found: upload {upload_id}")
            return
        entry["data"] += rec.body
        total = rec.headers.get("content-range", "").rpartition("/")[2]
        if total not in ("*", "") and int(total) > len(entry["data"]):
            self._send(308, None, {"Range": f"bytes=0-{len(entry['data']) - 1}"})
            return
        self._finish_upload(entry["project"], entry["job"], entry["data"])


def service_account_info(project: str = "legato-test-project") -> dict[str, str]:
    """A service-account key of the shape GCP's console downloads, with a fresh RSA key (it
    belongs to no real account: credentials built from it work offline, tokens never)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    email_addr = f"legato-test@{project}.iam.gserviceaccount.com"
    return {
        "type": "service_account", "project_id": project, "private_key_id": "0123456789abcdef",
        "private_key": pem, "client_email": email_addr, "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email_addr}",
    }
