"""KubernetesJob: the Job manifests it builds (checked against the Kubernetes client's own
models), customizations (JSON Patch), the errors without a cluster, and the client's requests
against a recording stub of the API server.

No Kubernetes cluster runs on this machine, so no Job is run here for real. The stub answers
the calls KubernetesJob makes (create/read/delete a Job, list/delete its pods) through the real
``kubernetes`` client and a kubeconfig pointing at it; what a cluster does with the Job is not
tested.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from pydantic import ValidationError

from legato.exceptions import BlockError, LegatoTimeoutError
from legato.infrastructure import FlowRunLaunch, InfrastructureNotFound, KubernetesJob
from legato.infrastructure.kubernetes import apply_json_patch, job_name_for, label_value

kubernetes = pytest.importorskip("kubernetes")

RUN_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def launch(**kwargs: Any) -> FlowRunLaunch:
    kwargs.setdefault("env", {"LEGATO_API_URL": "http://legato.legato.svc:4200/api"})
    kwargs.setdefault("labels", {"legato.io/flow-run-id": RUN_ID})
    kwargs.setdefault("name", "crimson-otter")
    return FlowRunLaunch(flow_run_id=RUN_ID, **kwargs)


def as_v1_job(manifest: dict[str, Any]) -> Any:
    """The manifest read by the Kubernetes client's own models (which check its structure)."""
    api = kubernetes.client.ApiClient()
    return api.deserialize(json.dumps(manifest), "V1Job", "application/json")


# -- the manifest ----------------------------------------------------------------------------
def test_default_manifest() -> None:
    manifest = KubernetesJob().build_job(launch())
    labels = {"legato.io/flow-run-id": RUN_ID}
    assert manifest == {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "crimson-otter-2e3f4a5b", "namespace": "default", "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "legato-job", "image": f"python:{PY}-slim",
                        "command": ["python", "-m", "legato.engine.deployed", RUN_ID],
                        "env": [{"name": "LEGATO_API_URL",
                                 "value": "http://legato.legato.svc:4200/api"}],
                    }],
                },
            },
        },
    }
    job = as_v1_job(manifest)
    assert job.spec.template.spec.containers[0].env[0].name == "LEGATO_API_URL"


def test_fields_fill_the_manifest() -> None:
    block = KubernetesJob(
        image="registry.example.com/flows:1.4", namespace="etl", service_account_name="runner",
        image_pull_policy="IF_NOT_PRESENT", finished_job_ttl=600, name="nightly",
        command=["python", "x.py"], env={"A": "block", "DROP": None}, labels={"team": "data"})
    manifest = block.build_job(launch(env={"A": "launch", "B": "b", "DROP": "x"}))
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert manifest["metadata"]["name"] == "nightly-2e3f4a5b"
    assert manifest["metadata"]["namespace"] == "etl"
    assert manifest["metadata"]["labels"] == {"legato.io/flow-run-id": RUN_ID, "team": "data"}
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 600
    assert pod["serviceAccountName"] == "runner"
    assert container["image"] == "registry.example.com/flows:1.4"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["python", "x.py"]
    assert container["env"] == [{"name": "A", "value": "block"}, {"name": "B", "value": "b"}]
    job = as_v1_job(manifest)
    assert job.spec.ttl_seconds_after_finished == 600
    assert job.spec.template.spec.service_account_name == "runner"


@pytest.mark.parametrize(("name", "expected"), [
    ("crimson-otter", "crimson-otter-2e3f4a5b"),
    ("My Flow: Nightly ETL!", "my-flow-nightly-etl-2e3f4a5b"),
    ("__", "flow-run-2e3f4a5b"),
    (None, "flow-run-2e3f4a5b"),
    ("x" * 100, "x" * 54 + "-2e3f4a5b"),
    ("a" * 53 + "-b" * 10, "a" * 53 + "-2e3f4a5b"),
])
def test_job_names_are_dns_labels(name: str | None, expected: str) -> None:
    assert job_name_for(name, RUN_ID) == expected
    assert len(expected) <= 63
    assert KubernetesJob().build_job(launch(name=name))["metadata"]["name"] == expected


def test_label_values_are_sanitised_and_keys_checked() -> None:
    assert label_value("crimson otter / #3") == "crimson-otter-3"
    assert label_value("-x-" + "y" * 80) == "x-" + "y" * 60
    manifest = KubernetesJob(labels={"legato.io/flow-run-name": "crimson otter!"}).build_job(
        launch())
    assert manifest["metadata"]["labels"]["legato.io/flow-run-name"] == "crimson-otter"
    for key in ("bad key", "UPPER.example.com/x", "x/", "a/b/c", "k" * 64):
        with pytest.raises(BlockError, match="not a valid Kubernetes label key"):
            KubernetesJob(labels={key: "v"}).build_job(launch())


def test_a_base_job_is_kept_and_completed() -> None:
    base = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"generateName": "old-", "name": "fixed", "labels": {"app": "etl"},
                     "annotations": {"a": "b"}},
        "spec": {"backoffLimit": 2, "activeDeadlineSeconds": 3600, "template": {"spec": {
            "nodeSelector": {"pool": "batch"},
            "containers": [
                {"name": "flow", "image": "base:1", "resources": {"limits": {"cpu": "1"}},
                 "env": [{"name": "SECRET", "valueFrom": {"secretKeyRef": {
                     "name": "s", "key": "k"}}}, {"name": "A", "value": "base"}]},
                {"name": "sidecar", "image": "proxy:2"},
            ]}}},
    }
    manifest = KubernetesJob(job=base).build_job(launch(env={"A": "launch"}))
    assert "generateName" not in manifest["metadata"]
    assert manifest["metadata"]["name"] == "crimson-otter-2e3f4a5b"
    assert manifest["metadata"]["labels"]["app"] == "etl"
    assert manifest["metadata"]["annotations"] == {"a": "b"}
    assert manifest["spec"]["backoffLimit"] == 2  # the base's own choice stands
    pod = manifest["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "batch"} and pod["restartPolicy"] == "Never"
    flow = pod["containers"][0]
    assert (flow["name"], flow["image"]) == ("flow", "base:1")
    assert flow["resources"] == {"limits": {"cpu": "1"}}
    assert flow["env"] == [
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "A", "value": "launch"}]
    assert pod["containers"][1] == {"name": "sidecar", "image": "proxy:2"}
    assert base["metadata"]["name"] == "fixed"  # the block's own value is not changed
    assert KubernetesJob(job=base, image="new:2").build_job(launch())[
        "spec"]["template"]["spec"]["containers"][0]["image"] == "new:2"
    as_v1_job(manifest)


def test_bad_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="batch/v1 Job manifest"):
        KubernetesJob(job={"apiVersion": "v1", "kind": "Pod"})
    with pytest.raises(ValidationError, match="namespace 'Prod_1' is not a valid"):
        KubernetesJob(namespace="Prod_1")
    with pytest.raises(ValidationError, match="image_pull_policy"):
        KubernetesJob(image_pull_policy="Sometimes")


# -- customizations --------------------------------------------------------------------------
def test_customizations() -> None:
    block = KubernetesJob(customizations=[
        {"op": "add", "path": "/spec/template/spec/containers/0/resources",
         "value": {"limits": {"memory": "2Gi"}}},
        {"op": "add", "path": "/metadata/annotations", "value": {}},
        {"op": "add", "path": "/metadata/annotations/example.com~1owner", "value": "data"},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-",
         "value": {"name": "EXTRA", "value": "1"}},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/0",
         "value": {"name": "FIRST", "value": "0"}},
        {"op": "replace", "path": "/spec/backoffLimit", "value": 1},
        {"op": "remove", "path": "/spec/template/metadata"},
        {"op": "copy", "from": "/metadata/labels", "path": "/spec/template/metadata"},
        {"op": "move", "from": "/metadata/annotations", "path": "/spec/template/annotations"},
        {"op": "test", "path": "/spec/backoffLimit", "value": 1},
    ])
    manifest = block.build_job(launch())
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"limits": {"memory": "2Gi"}}
    assert [e["name"] for e in container["env"]] == ["FIRST", "LEGATO_API_URL", "EXTRA"]
    assert manifest["spec"]["backoffLimit"] == 1
    assert manifest["spec"]["template"]["metadata"] == {"legato.io/flow-run-id": RUN_ID}
    assert manifest["spec"]["template"]["annotations"] == {"example.com/owner": "data"}
    assert "annotations" not in manifest["metadata"]


def test_customizations_agree_with_the_jsonpatch_package() -> None:
    jsonpatch = pytest.importorskip("jsonpatch")
    doc = {"a": {"b": [1, 2, 3], "c/d": {"e~f": 1}}, "z": None}
    ops = [
        {"op": "add", "path": "/a/b/1", "value": 9}, {"op": "remove", "path": "/a/b/0"},
        {"op": "replace", "path": "/a/c~1d/e~0f", "value": [1]},
        {"op": "move", "from": "/a/b", "path": "/b"}, {"op": "copy", "from": "/b", "path": "/c"},
        {"op": "add", "path": "/c/-", "value": {"k": "v"}}, {"op": "test", "path": "/z",
                                                             "value": None},
        {"op": "replace", "path": "", "value": {"whole": ["new", {"doc": 1}]}},
        {"op": "add", "path": "/whole/1/doc", "value": 2},
    ]
    assert apply_json_patch(doc, ops) == jsonpatch.apply_patch(doc, ops)
    assert doc["a"]["b"] == [1, 2, 3]  # not changed in place


@pytest.mark.parametrize(("op", "message"), [
    ({"op": "remove", "path": "/spec/nope"}, r"customizations\[0\] \(remove /spec/nope\).*no "
                                             "key 'nope'"),
    ({"op": "replace", "path": "/spec/template/spec/containers/5", "value": {}},
     "index 5 is past the end"),
    ({"op": "add", "path": "/spec/x/y", "value": 1}, "no key 'x'"),
    ({"op": "test", "path": "/spec/backoffLimit", "value": 3}, "the value is 0, not 3"),
    ({"op": "add", "path": "/spec/template/spec/containers/01", "value": {}},
     "'01' is not a list index"),
    ({"op": "move", "from": "/spec", "path": "/spec/inner"}, "into itself"),
])
def test_a_failing_customization_names_itself(op: dict[str, Any], message: str) -> None:
    with pytest.raises(BlockError, match=message):
        KubernetesJob(customizations=[op]).build_job(launch())


def test_customizations_that_break_the_job_are_refused() -> None:
    with pytest.raises(BlockError, match="name 'Not Valid' is not a valid DNS-1123 label"):
        KubernetesJob(customizations=[{"op": "replace", "path": "/metadata/name",
                                       "value": "Not Valid"}]).build_job(launch())
    with pytest.raises(BlockError, match="containers, each with a name and an image"):
        KubernetesJob(customizations=[{"op": "remove", "path": "/spec/template/spec/containers/"
                                       "0/image"}]).build_job(launch())


@pytest.mark.parametrize(("ops", "message"), [
    ([{"op": "merge", "path": "/a"}], "'op' is one of add, copy, move, remove, replace, test"),
    ([{"op": "add", "path": "spec", "value": 1}], "needs 'path', a JSON pointer"),
    ([{"op": "add", "path": "/spec"}], r"\(add /spec\) needs a 'value'"),
    ([{"op": "move", "path": "/spec"}], "needs 'from'"),
    (["add /spec"], "must be an object"),
    ("[not json", "customizations is not valid JSON"),
])
def test_malformed_customizations_are_refused(ops: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KubernetesJob(customizations=ops)


def test_customizations_as_a_json_string() -> None:
    block = KubernetesJob(customizations='[{"op": "add", "path": "/spec/parallelism", '
                                         '"value": 1}]')
    assert block.build_job(launch())["spec"]["parallelism"] == 1


def test_work_pool_template() -> None:
    template = KubernetesJob.base_job_template()
    props = template["variables"]["properties"]
    assert props["namespace"]["default"] == "default"
    assert props["pod_watch_timeout_seconds"]["default"] == 60
    block = KubernetesJob.from_job_variables(template, {
        "namespace": "etl", "image": "flows:3", "finished_job_ttl": 60,
        "customizations": [{"op": "add", "path": "/spec/parallelism", "value": 1}]})
    manifest = block.build_job(launch())
    assert manifest["metadata"]["namespace"] == "etl"
    assert manifest["spec"]["parallelism"] == 1
    with pytest.raises(BlockError, match="finished_job_ttl: 'soon' is not valid"):
        KubernetesJob.from_job_variables(template, {"finished_job_ttl": "soon"})
    with pytest.raises(BlockError, match="Unknown job variable.*'cpu_request'"):
        KubernetesJob.from_job_variables(template, {"cpu_request": "500m"})


# -- no cluster here -------------------------------------------------------------------------
@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(json.dumps({  # JSON is YAML
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": server}}],
        "users": [{"name": "stub", "user": {"token": "t0k3n"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
    }))
    return path


def test_no_cluster_is_a_clear_error(no_cluster: None, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    missing = tmp_path / "kubeconfig"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    with pytest.raises(BlockError, match=f"not inside a cluster .*no usable kubeconfig at "
                                         f"{missing}.*KUBECONFIG"):
        KubernetesJob().start(launch())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(missing, f"http://127.0.0.1:{port}")))
    with pytest.raises(BlockError, match=f"Could not reach Kubernetes at http://127.0.0.1:{port}"
                                         " to create the Job in namespace 'default'"):
        KubernetesJob().start(launch())


# -- through the client, against a recording stub of the API server --------------------------
class ApiServerStub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ApiHandler)
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.refuse: tuple[int, str] | None = None

    def add_pod(self, ns: str, job: str, phase: str, exit_code: int | None = None) -> None:
        status: dict[str, Any] = {"phase": phase}
        if exit_code is not None:
            status["containerStatuses"] = [{
                "name": "legato-job", "image": "i", "imageID": "", "ready": False,
                "restartCount": 0, "state": {"terminated": {"exitCode": exit_code}}}]
        self.pods[(ns, f"{job}-abcde")] = {
            "metadata": {"name": f"{job}-abcde", "namespace": ns, "labels": {"job-name": job}},
            "status": status}

    def calls(self, method: str, fragment: str) -> list[tuple[str, str, Any, Any]]:
        return [r for r in self.requests if r[0] == method and fragment in r[1]]


class _ApiHandler(BaseHTTPRequestHandler):
    server: ApiServerStub

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": reason, "message": message, "code": code})

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        stub = self.server
        stub.requests.append((method, path, query, body))
        assert self.headers["Authorization"] == "Bearer t0k3n"
        if stub.refuse:
            return self._status(stub.refuse[0], "Forbidden", stub.refuse[1])
        seg = path.strip("/").split("/")
        if seg[:3] == ["apis", "batch", "v1"] and seg[5:6] == ["jobs"]:
            ns = seg[4]
            if method == "POST":
                key = (ns, body["metadata"]["name"])
                if key in stub.jobs:
                    return self._status(409, "AlreadyExists", f'jobs "{key[1]}" already exists')
                stub.jobs[key] = dict(body, status={})
                return self._send(201, stub.jobs[key])
            key = (ns, seg[6])
            if key not in stub.jobs:
                return self._status(404, "NotFound", f'jobs "{key[1]}" not found')
            if method == "DELETE":
                return self._send(200, {"kind": "Status", "status": "Success",
                                        "job": stub.jobs.pop(key)["metadata"]["name"]})
            return self._send(200, stub.jobs[key])
        if seg[:3] == ["api", "v1", "namespaces"] and seg[4:5] == ["pods"]:
            ns = seg[3]
            if method == "GET":
                wanted = query.get("labelSelector", [""])[0].partition("=")[2]
                items = [p for (n, _), p in stub.pods.items()
                         if n == ns and p["metadata"]["labels"]["job-name"] == wanted]
                return self._send(200, {"kind": "PodList", "apiVersion": "v1",
                                        "metadata": {}, "items": items})
            pod = stub.pods.pop((ns, seg[5]), None)
            if pod is None:
                return self._status(404, "NotFound", f'pods "{seg[5]}" not found')
            return self._send(200, dict(pod, kind="Pod", apiVersion="v1"))
        return self._status(404, "NotFound", f"stub: no route {method} {path}")

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


@pytest.fixture
def cluster(no_cluster: None, monkeypatch: pytest.MonkeyPatch,
            tmp_path: Path) -> Iterator[ApiServerStub]:
    stub = ApiServerStub()
    threading.Thread(target=stub.serve_forever, args=(0.05,), daemon=True).start()
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{stub.server_address[1]}")
    monkeypatch.setenv("KUBECONFIG", str(config))
    yield stub
    stub.shutdown()
    stub.server_close()


def test_start_creates_the_built_job(cluster: ApiServerStub) -> None:
    block = KubernetesJob(namespace="etl", image="flows:1")
    handle = block.start(launch())
    (method, path, _, body), = cluster.calls("POST", "/jobs")
    assert path == "/apis/batch/v1/namespaces/etl/jobs"
    assert body == block.build_job(launch())
    assert handle.identifier == "etl:crimson-otter-2e3f4a5b"
    assert handle.poll() is None
    cluster.jobs[("etl", handle.name)]["status"] = {"succeeded": 1}
    assert handle.poll() == 0
    assert handle.wait() == 0


def test_a_failed_job_reports_its_pods_exit_code(cluster: ApiServerStub) -> None:
    handle = KubernetesJob().start(launch())
    cluster.add_pod("default", handle.name, "Failed", exit_code=3)
    cluster.jobs[("default", handle.name)]["status"] = {"failed": 1}
    assert handle.wait() == 3
    other = KubernetesJob().start(launch(name="other"))
    cluster.jobs[("default", other.name)]["status"] = {"conditions": [
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
    assert other.poll() == 1  # no pod left to ask


def test_a_taken_name_gets_a_suffix(cluster: ApiServerStub) -> None:
    first = KubernetesJob().start(launch())
    second = KubernetesJob().start(launch())
    assert (first.name, second.name) == ("crimson-otter-2e3f4a5b", "crimson-otter-2e3f4a5b-2")


def test_kill_deletes_the_pods_with_the_grace_then_the_job(cluster: ApiServerStub) -> None:
    block = KubernetesJob()
    handle = block.start(launch())
    cluster.add_pod("default", handle.name, "Running")
    handle.kill(grace_seconds=45)
    (_, pod_path, pod_query, _), = cluster.calls("DELETE", "/pods/")
    assert pod_path == f"/api/v1/namespaces/default/pods/{handle.name}-abcde"
    assert pod_query["gracePeriodSeconds"] == ["45"]
    (_, job_path, job_query, _), = cluster.calls("DELETE", "/jobs/")
    assert job_path == f"/apis/batch/v1/namespaces/default/jobs/{handle.name}"
    assert job_query["propagationPolicy"] == ["Background"]
    assert handle.poll() == -1  # deleted before it finished
    handle.kill()  # gone already: fine
    with pytest.raises(InfrastructureNotFound, match=f"No Job '{handle.name}' in namespace "
                                                     "'default'"):
        block.kill(handle.identifier)
    other = block.start(launch(name="other"))
    block.kill(other.identifier, grace_seconds=5)
    assert ("default", other.name) not in cluster.jobs
    with pytest.raises(BlockError, match="'just-a-name' is not a Job identifier"):
        block.kill("just-a-name")


def test_wait_gives_up_on_a_pod_that_never_starts(cluster: ApiServerStub) -> None:
    handle = KubernetesJob(pod_watch_timeout_seconds=0).start(launch())
    cluster.add_pod("default", handle.name, "Pending")
    assert handle.wait() == -1
    assert ("default", handle.name) not in cluster.jobs  # deleted, so it cannot start later


def test_wait_timeout(cluster: ApiServerStub) -> None:
    handle = KubernetesJob(pod_watch_timeout_seconds=0).start(launch())
    cluster.add_pod("default", handle.name, "Running")
    with pytest.raises(LegatoTimeoutError, match="still running after 0 s"):
        handle.wait(timeout=0)
    assert ("default", handle.name) in cluster.jobs  # a running Job is left alone


def test_api_errors_are_block_errors(cluster: ApiServerStub) -> None:
    cluster.refuse = (403, 'jobs.batch is forbidden: User "system:anonymous" cannot create')
    with pytest.raises(BlockError, match="refused to create the Job in namespace 'default': 403 "
                                         "jobs.batch is forbidden"):
        KubernetesJob().start(launch())
