"""`legato deploy`: the deployments of a project file (Prefect 3's prefect.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from legato.cli import app
from legato.client.factory import get_client

FLOW = '''
from legato import flow


@flow(name="Parent GCP flow")
def gather_flow(color: str, year: int, months: list[int]) -> None:
    pass
'''

PROJECT = '''
name: taxi
pull:
  - prefect.deployments.steps.git_clone:
      repository: https://example.invalid/me/repo.git
      branch: main
  - prefect.deployments.steps.set_working_directory:
      directory: taxi
deployments:
  - name: monthly
    entrypoint: flows/etl.py:gather_flow
    parameters: {color: yellow, year: 2021, months: [1, 2]}
    schedules: [{cron: "0 5 1 * *", timezone: Europe/Berlin}]
    tags: [taxi]
  - name: adhoc
    entrypoint: flows/etl.py:gather_flow
    work_pool: {name: null, work_queue_name: adhoc}
'''


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "etl.py").write_text(FLOW)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_deploy_all_from_a_prefect_yaml(history_or_server: str, project: Path) -> None:
    (project / "prefect.yaml").write_text(PROJECT)
    r = run("deploy", "--all")
    assert r.exit_code == 0, r.output
    c = get_client()
    monthly = c.read_deployment_by_name("Parent GCP flow/monthly")
    assert monthly["entrypoint"] == "flows/etl.py:gather_flow"
    assert monthly["parameters"] == {"color": "yellow", "year": 2021, "months": [1, 2]}
    assert monthly["tags"] == ["taxi"] and monthly["path"] == "taxi"
    [s] = monthly["schedules"]
    assert s["schedule"]["cron"] == "0 5 1 * *" and s["schedule"]["timezone"] == "Europe/Berlin"
    assert monthly["parameter_openapi_schema"]["required"] == ["color", "year", "months"]
    storage = c.read_block_document_by_id(str(monthly["storage_document_id"]))
    assert storage["block_type"]["slug"] == "github"
    assert storage["data"]["repository"] == "https://example.invalid/me/repo.git"
    assert c.read_deployment_by_name("Parent GCP flow/adhoc")["work_queue_name"] == "adhoc"


def test_deploy_by_name_and_errors(history_or_server: str, project: Path) -> None:
    (project / "legato.yaml").write_text(PROJECT.replace("prefect.deployments.steps.", ""))
    assert run("deploy", "-n", "adhoc").exit_code == 0
    assert [d["name"] for d in get_client().read_deployments()] == ["adhoc"]
    r = run("deploy", "-n", "nope")
    assert r.exit_code == 1 and "no deployment named 'nope'" in r.output
    assert run("deploy").exit_code == 1  # say which
    (project / "legato.yaml").write_text(PROJECT.replace("git_clone", "pip_install_requirements"))
    r = run("deploy", "--all")
    assert r.exit_code == 1 and "pip_install_requirements" in r.output
    (project / "legato.yaml").unlink()
    r = run("deploy", "--all")
    assert r.exit_code == 1 and "No legato.yaml" in r.output


def test_access_token_references_read_a_secret_block_and_other_templates_are_refused() -> None:
    from legato.blocks.system import Secret
    from legato.deployments.deployment import DeploymentError
    from legato.deployments.project import _access_token

    Secret(value="ghp-the-token").save("gh-token")
    for ref in ("{{ prefect.blocks.secret.gh-token }}", "{{ legato.blocks.secret.gh-token }}",
                "{{block.secret.gh-token}}"):
        assert _access_token(ref, Secret) == "ghp-the-token", ref
    assert _access_token("plain-token", Secret) == "plain-token"
    assert _access_token(None, Secret) is None
    with pytest.raises(DeploymentError, match="template Legato does not read"):
        _access_token("{{ legato.variables.token }}", Secret)


def test_build_and_push_sections_are_named_as_ignored(history: str, project: Path) -> None:
    (project / "prefect.yaml").write_text(
        "build:\n  - prefect_docker.deployments.steps.build_docker_image: {image_name: etl}\n"
        "push:\n  - prefect_docker.deployments.steps.push_docker_image: {image_name: etl}\n"
        + PROJECT.split("\n", 2)[2])
    r = run("deploy", "-n", "adhoc")
    assert r.exit_code == 0, r.output
    assert "`build:` section" in r.output and "`push:` section" in r.output
    assert "ignored" in r.output
    assert get_client().read_deployment_by_name("Parent GCP flow/adhoc")


def test_a_git_clone_step_the_github_block_refuses_is_one_clear_error(
        history: str, project: Path) -> None:
    token = "tok-secret-1234567"
    (project / "prefect.yaml").write_text(
        "pull:\n  - prefect.deployments.steps.git_clone:\n"
        f"      repository: file:///srv/repo.git\n      access_token: {token}\n"
        "deployments:\n  - name: adhoc\n    entrypoint: flows/etl.py:gather_flow\n")
    r = run("deploy", "--all")
    assert r.exit_code != 0
    assert "cannot make a GitHub storage block" in r.output, r.output
    assert "Traceback" not in r.output and token not in r.output
    (project / "prefect.yaml").write_text(
        "pull:\n  - prefect.deployments.steps.git_clone: {branch: main}\n"
        "deployments:\n  - name: adhoc\n    entrypoint: flows/etl.py:gather_flow\n")
    r = run("deploy", "--all")
    assert r.exit_code != 0 and "needs a `repository:`" in r.output, r.output
