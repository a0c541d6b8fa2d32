"""DockerContainer: the container spec it builds, the errors without an engine, and the Docker
SDK's requests against a recording stub of the Engine API.

No Docker engine runs on this machine (and no image could be pulled: there is no internet), so
no container is started here for real. The stub answers the handful of Engine API calls the SDK
makes (version, images, containers create/start/wait/stop/logs, networks) so the code around
them (pull policy, name conflicts, exit codes, stop with a grace period) runs through the real
``docker`` SDK; what a real engine does with the container is not tested.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from pydantic import ValidationError

from legato.exceptions import BlockError, MissingExtraError
from legato.infrastructure import DockerContainer, FlowRunLaunch, InfrastructureNotFound
from legato.infrastructure.docker import docker_container_name

docker = pytest.importorskip("docker")

RUN_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def launch(**kwargs: Any) -> FlowRunLaunch:
    kwargs.setdefault("env", {"LEGATO_API_URL": "https://legato.example.com/api"})
    kwargs.setdefault("labels", {"legato.io/flow-run-id": RUN_ID})
    return FlowRunLaunch(flow_run_id=RUN_ID, **kwargs)


def eventually(check: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{check} still false after {seconds} s"
        time.sleep(0.01)


# -- the spec --------------------------------------------------------------------------------
def test_default_spec() -> None:
    spec = DockerContainer().container_spec(launch(name="crimson otter"))
    assert spec == {
        "image": f"python:{PY}-slim",
        "command": ["python", "-m", "legato.engine.deployed", RUN_ID],
        "environment": {"LEGATO_API_URL": "https://legato.example.com/api"},
        "labels": {"legato.io/flow-run-id": RUN_ID},
        "name": "crimson-otter",
        "detach": True, "init": True, "auto_remove": False, "privileged": False,
    }


def test_block_values_win_over_the_launch() -> None:
    block = DockerContainer(
        image="registry.example.com/flows:1.4", name="nightly etl", command=["python", "x.py"],
        env={"A": "block", "DROP": None}, labels={"team": "data", "legato.io/extra": "1"},
        auto_remove=True, mem_limit="2g", memswap_limit=-1, privileged=True)
    spec = block.container_spec(launch(
        name="crimson-otter", command=["launch"],
        env={"A": "launch", "B": "launch", "DROP": "x"}, labels={"legato.io/flow-run-id": "1"}))
    assert spec["image"] == "registry.example.com/flows:1.4"
    assert spec["name"] == "nightly-etl"
    assert spec["command"] == ["python", "x.py"]
    assert spec["environment"] == {"A": "block", "B": "launch"}
    assert spec["labels"] == {"legato.io/flow-run-id": "1", "team": "data", "legato.io/extra": "1"}
    assert (spec["auto_remove"], spec["mem_limit"], spec["memswap_limit"], spec["privileged"]) \
        == (True, "2g", -1, True)
    assert DockerContainer().container_spec(launch(command=["a"]))["command"] == ["a"]


@pytest.mark.parametrize(("name", "expected"), [
    ("crimson otter", "crimson-otter"),
    ("--flow/run: #3!", "flow-run-3"),
    ("My_Flow.v2", "My_Flow.v2"),
    ("日本語", None),
    ("", None),
    (None, None),
    ("a" * 300, "a" * 128),
])
def test_container_names_follow_dockers_rules(name: str | None, expected: str | None) -> None:
    assert docker_container_name(name) == expected
    spec = DockerContainer().container_spec(launch(name=name))
    assert spec.get("name") == expected


def test_volumes() -> None:
    spec = DockerContainer(volumes=["/data:/data:ro", "cache:/root/.cache",
                                    "/src:/src:ro,z"]).container_spec(launch())
    assert spec["volumes"] == {
        "/data": {"bind": "/data", "mode": "ro"},
        "cache": {"bind": "/root/.cache", "mode": "rw"},
        "/src": {"bind": "/src", "mode": "ro,z"},
    }


@pytest.mark.parametrize("volume", ["/data", "/data:relative", ":/x", "/a:/b:rx", "/a:/b:ro:z"])
def test_bad_volumes_are_refused(volume: str) -> None:
    with pytest.raises(ValidationError, match=f"volume '{volume}'"):
        DockerContainer(volumes=[volume])


def test_networks() -> None:
    assert DockerContainer(networks=["etl", "db"]).container_spec(launch())["network"] == "etl"
    spec = DockerContainer(network_mode="host").container_spec(launch())
    assert spec["network_mode"] == "host" and "network" not in spec
    with pytest.raises(ValidationError, match="networks or network_mode, not both"):
        DockerContainer(networks=["etl"], network_mode="bridge")


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:4200/api", "http://host.docker.internal:4200/api"),
    ("http://localhost:4200/api", "http://host.docker.internal:4200/api"),
    ("http://LOCALHOST/api", "http://host.docker.internal/api"),
    ("https://user:pw@[::1]:8443/api?x=1", "https://user:pw@host.docker.internal:8443/api?x=1"),
    ("http://0.0.0.0:4200/api", "http://host.docker.internal:4200/api"),
])
def test_a_loopback_api_url_reaches_the_host(url: str, expected: str) -> None:
    spec = DockerContainer().container_spec(launch(env={"LEGATO_API_URL": url}))
    assert spec["environment"]["LEGATO_API_URL"] == expected
    assert spec["extra_hosts"] == {"host.docker.internal": "host-gateway"}


def test_other_api_urls_are_left_alone() -> None:
    for env in ({"LEGATO_API_URL": "http://legato.internal:4200/api"}, {}):
        spec = DockerContainer().container_spec(launch(env=env))
        assert spec["environment"] == env and "extra_hosts" not in spec
    # on the host's network the container's loopback is the host's
    spec = DockerContainer(network_mode="host").container_spec(
        launch(env={"LEGATO_API_URL": "http://127.0.0.1:4200/api"}))
    assert spec["environment"]["LEGATO_API_URL"] == "http://127.0.0.1:4200/api"
    assert "extra_hosts" not in spec


def test_the_sdk_accepts_the_spec() -> None:
    """The docker SDK turns the spec into the Engine API's create request, unchanged."""
    from docker.models.containers import _create_container_args

    block = DockerContainer(image="flows:1", volumes=["/data:/data:ro"], networks=["etl"],
                            mem_limit="1g", auto_remove=True)
    spec = block.container_spec(launch(env={"LEGATO_API_URL": "http://localhost:4200/api"}))
    args = _create_container_args(dict(spec, version="1.45"))
    host = args["host_config"]
    assert args["image"] == "flows:1" and args["command"] == spec["command"]
    assert args["labels"] == spec["labels"] and args["detach"] is True
    assert host["Binds"] == ["/data:/data:ro"]
    assert host["ExtraHosts"] == ["host.docker.internal:host-gateway"]
    assert host["Init"] is True and host["AutoRemove"] is True
    assert host["NetworkMode"] == "etl" and host["Memory"] == 1024 ** 3
    assert list(args["networking_config"]) == ["etl"]


@pytest.mark.parametrize(("given", "policy"), [
    ("IfNotPresent", "IF_NOT_PRESENT"), ("always", "ALWAYS"), ("NEVER", "NEVER"),
])
def test_pull_policy_spellings(given: str, policy: str) -> None:
    assert DockerContainer(image_pull_policy=given).image_pull_policy == policy


def test_work_pool_template() -> None:
    template = DockerContainer.base_job_template()
    props = template["variables"]["properties"]
    assert props["image_pull_policy"]["default"] == "IF_NOT_PRESENT"
    assert props["image_pull_policy"]["enum"] == ["IF_NOT_PRESENT", "ALWAYS", "NEVER"]
    assert props["networks"]["default"] == [] and props["auto_remove"]["default"] is False
    block = DockerContainer.from_job_variables(
        template, {"image": "flows:2", "networks": ["etl"], "volumes": ["/d:/d"]})
    assert (block.image, block.networks, block.volumes) == ("flows:2", ["etl"], ["/d:/d"])
    with pytest.raises(BlockError, match="volumes: '/d:/d' is not of type 'array'"):
        DockerContainer.from_job_variables(template, {"volumes": "/d:/d"})
    with pytest.raises(BlockError, match="image_pull_policy: 'SOMETIMES' is not one of"):
        DockerContainer.from_job_variables(template, {"image_pull_policy": "SOMETIMES"})
    with pytest.raises(BlockError, match="valid Docker Container: volumes: Value error, volume '/d'"):
        DockerContainer.from_job_variables(template, {"volumes": ["/d"]})


# -- no engine here --------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_engine_at_docker_host(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    sock = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    with pytest.raises(BlockError, match=f"Could not reach a Docker engine at unix://{sock} "
                                         r"\(DOCKER_HOST\).*set DOCKER_HOST"):
        DockerContainer().start(launch())
    port = _closed_port()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
    with pytest.raises(BlockError, match=f"tcp://127.0.0.1:{port}.*Connection refused"):
        DockerContainer().kill("0123456789ab")


@pytest.mark.skipif(os.path.exists("/var/run/docker.sock"), reason="a Docker socket exists")
def test_no_engine_at_the_default_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with pytest.raises(BlockError, match="unix:///var/run/docker.sock .the default; DOCKER_HOST"
                                         " is not set"):
        DockerContainer().start(launch())


def test_importing_needs_neither_sdk() -> None:
    code = ("import sys, legato.infrastructure as i; "
            "assert 'docker' not in sys.modules and 'kubernetes' not in sys.modules; "
            "sys.modules['docker'] = None\n"
            "try:\n    i.DockerContainer().start(i.FlowRunLaunch(flow_run_id='x'))\n"
            "except ImportError as exc:\n    print(type(exc).__name__, exc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith(MissingExtraError.__name__)
    assert "pip install 'legato[docker]'" in out


# -- through the SDK, against a recording stub of the Engine API -----------------------------
class EngineStub(ThreadingHTTPServer):
    """Just enough of the Docker Engine API for the calls DockerContainer makes."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EngineHandler)
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.images: set[str] = set()
        self.containers: dict[str, dict[str, Any]] = {}
        self.networks: dict[str, list[str]] = {"etl": [], "db": []}
        self.changed = threading.Condition()
        self.fail_create: tuple[int, str] | None = None

    def finish(self, cid: str, code: int) -> None:
        with self.changed:
            box = self.containers[cid]
            box["state"], box["code"] = "exited", code
            if box["body"]["HostConfig"].get("AutoRemove"):
                box["removed"] = True
            self.changed.notify_all()

    def calls(self, method: str, fragment: str) -> list[tuple[str, str, Any, Any]]:
        return [r for r in self.requests if r[0] == method and fragment in r[1]]


class _EngineHandler(BaseHTTPRequestHandler):
    server: EngineStub

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = "/" + unquote(parts.path).split("/", 2)[-1] if parts.path.startswith("/v1.") \
            else unquote(parts.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        stub = self.server
        stub.requests.append((method, path, query, body))
        seg = path.strip("/").split("/")
        if path == "/version":
            return self._send(200, {"ApiVersion": "1.45", "Version": "stub"})
        if seg[0] == "images" and seg[-1] == "json":
            name = "/".join(seg[1:-1])
            if name in stub.images:
                return self._send(200, {"Id": "sha256:" + "0" * 64, "RepoTags": [name]})
            return self._send(404, {"message": f"No such image: {name}"})
        if path == "/images/create":
            stub.images.add(f"{query['fromImage'][0]}:{query['tag'][0]}")
            return self._send(200, raw=b'{"status":"Pulled"}\n')
        if seg[0] == "networks":
            if len(seg) == 2:
                return self._send(200, {"Id": seg[1], "Name": seg[1]})
            stub.networks[seg[1]].append(body["Container"])
            return self._send(200)
        if path == "/containers/create":
            name = query.get("name", [None])[0]
            if stub.fail_create:
                return self._send(stub.fail_create[0], {"message": stub.fail_create[1]})
            if body["Image"] not in stub.images:
                return self._send(404, {"message": f"No such image: {body['Image']}"})
            if name and any(c["name"] == name for c in stub.containers.values()):
                return self._send(409, {"message": f'Conflict. The container name "/{name}" '
                                                   "is already in use"})
            cid = uuid.uuid4().hex * 2
            stub.containers[cid] = {"name": name, "body": body, "state": "created",
                                    "code": None, "removed": False}
            return self._send(201, {"Id": cid, "Warnings": []})
        if seg[0] == "containers":
            box = stub.containers.get(seg[1])
            if box is None or box["removed"]:
                return self._send(404, {"message": f"No such container: {seg[1]}"})
            action = seg[2] if len(seg) > 2 else "delete"
            if action == "json":
                return self._send(200, {"Id": seg[1], "Name": f"/{box['name']}",
                                        "State": {"Status": box["state"]},
                                        "Config": {"Tty": False}})
            if action == "start":
                box["state"] = "running"
                return self._send(204)
            if action == "stop":
                if box["state"] != "running":
                    return self._send(304)
                stub.finish(seg[1], 143)
                return self._send(204)
            if action == "delete":
                box["removed"] = True
                return self._send(204)
            if action == "wait":
                with stub.changed:
                    stub.changed.wait_for(lambda: box["state"] == "exited", timeout=60)
                return self._send(200, {"StatusCode": box["code"], "Error": None})
            if action == "logs":
                with stub.changed:
                    stub.changed.wait_for(lambda: box["state"] == "exited", timeout=60)
                text = b"hello from the container\n"
                return self._send(200, raw=struct.pack(">BxxxL", 1, len(text)) + text)
        return self._send(404, {"message": f"stub: no route {method} {path}"})

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineStub]:
    stub = EngineStub()
    thread = threading.Thread(target=stub.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{stub.server_address[1]}")
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    yield stub
    with stub.changed:  # release any long poll still waiting
        for box in stub.containers.values():
            box["state"] = "exited"
        stub.changed.notify_all()
    stub.shutdown()
    stub.server_close()


def test_start_wait_and_exit_code(engine: EngineStub) -> None:
    handle = DockerContainer(image="flows:1", stream_output=False).start(launch(name="otter"))
    created = engine.calls("POST", "/containers/create")[0]
    assert created[2]["name"] == ["otter"]
    assert created[3]["Image"] == "flows:1"
    assert created[3]["Cmd"] == ["python", "-m", "legato.engine.deployed", RUN_ID]
    assert created[3]["Env"] == ["LEGATO_API_URL=https://legato.example.com/api"]
    assert created[3]["Labels"] == {"legato.io/flow-run-id": RUN_ID}
    assert created[3]["HostConfig"]["Init"] is True
    assert engine.containers[handle.identifier]["state"] == "running"
    assert engine.calls("POST", "/images/create")[0][2]["fromImage"] == ["flows"]
    assert handle.poll() is None
    eventually(lambda: engine.calls("POST", "/wait"))
    assert engine.calls("POST", "/wait")[0][2]["condition"] == ["not-running"]
    engine.finish(handle.identifier, 3)
    assert handle.wait(timeout=20) == 3
    assert handle.poll() == 3


@pytest.mark.parametrize(("policy", "present", "pulled"), [
    ("IF_NOT_PRESENT", True, False), ("IF_NOT_PRESENT", False, True),
    ("ALWAYS", True, True), ("NEVER", True, False),
])
def test_pull_policy(engine: EngineStub, policy: str, present: bool, pulled: bool) -> None:
    if present:
        engine.images.add("flows:1")
    handle = DockerContainer(image="flows:1", image_pull_policy=policy,
                             stream_output=False).start(launch())
    assert bool(engine.calls("POST", "/images/create")) is pulled
    handle.kill(grace_seconds=0)


def test_a_taken_name_gets_a_suffix_and_networks_are_attached(engine: EngineStub) -> None:
    block = DockerContainer(image="flows:1", networks=["etl", "db"], stream_output=False)
    first = block.start(launch(name="otter"))
    second = block.start(launch(name="otter"))
    names = [engine.containers[h.identifier]["name"] for h in (first, second)]
    assert names == ["otter", "otter-1"]
    assert engine.containers[second.identifier]["body"]["HostConfig"]["NetworkMode"] == "etl"
    assert engine.networks["db"] == [first.identifier, second.identifier]
    assert engine.networks["etl"] == []  # joined at create time, not connected again
    for handle in (first, second):
        handle.kill(grace_seconds=0)


def test_kill_stops_with_the_grace_period(engine: EngineStub) -> None:
    block = DockerContainer(image="flows:1", stream_output=False)
    handle = block.start(launch())
    handle.kill(grace_seconds=45)
    assert engine.calls("POST", f"/containers/{handle.identifier}/stop")[0][2]["t"] == ["45"]
    assert handle.wait(timeout=20) == 143
    handle.kill()  # already finished: nothing to do
    other = block.start(launch())
    block.kill(other.identifier, grace_seconds=5)  # from the bare identifier
    assert other.wait(timeout=20) == 143
    with pytest.raises(InfrastructureNotFound, match="No container 'gone'.*Docker engine at tcp"):
        block.kill("gone")


def test_auto_remove_still_reports_the_exit_code(engine: EngineStub) -> None:
    handle = DockerContainer(image="flows:1", auto_remove=True, stream_output=False).start(
        launch())
    eventually(lambda: engine.calls("POST", "/wait"))
    assert engine.calls("POST", "/wait")[0][2]["condition"] == ["removed"]
    engine.finish(handle.identifier, 0)
    assert handle.wait(timeout=20) == 0
    assert engine.containers[handle.identifier]["removed"]


def test_output_is_streamed(engine: EngineStub, capsys: pytest.CaptureFixture) -> None:
    handle = DockerContainer(image="flows:1").start(launch())
    engine.finish(handle.identifier, 0)
    assert handle.wait(timeout=20) == 0
    seen: list[str] = []
    eventually(lambda: seen.append(capsys.readouterr().out) or "hello from the container"
               in "".join(seen))


def test_engine_errors_are_block_errors(engine: EngineStub) -> None:
    engine.fail_create = (500, "no space left on device")
    with pytest.raises(BlockError, match="Docker could not start a container of 'flows:1'.*no "
                                         "space left on device"):
        DockerContainer(image="flows:1").start(launch())
    engine.fail_create = None
    with pytest.raises(BlockError, match="No such image: missing:1"):
        DockerContainer(image="missing:1", image_pull_policy="NEVER").start(launch())
