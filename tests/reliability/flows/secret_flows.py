"""A flow that does everything a careless flow does with secrets: prints them, logs them with its
run logger, logs an exception whose message and traceback hold one, fails a task with one in
its exception (so in its Failed state's message). Run as a script:
``python secret_flows.py RUN_ID_FILE``; the blocks it loads were saved by the test."""

from __future__ import annotations

import sys

from legato import flow, get_run_logger, task
from legato.aws import AwsCredentials
from legato.blocks.notifications import SlackWebhook
from legato.blocks.system import Secret
from legato.gcp import GcpCredentials
from legato.runtime import flow_run


@task(log_prints=True)
def use_cloud_keys() -> None:
    aws = AwsCredentials.load("aws")
    key = aws.aws_secret_access_key.get_secret_value()
    print(f"aws secret key: {key}")
    info = GcpCredentials.load("gcp").service_account_info.get_secret_value()
    print("gcp private key:", info["private_key"])
    print("the whole service account, repr:", repr(info))
    try:
        raise PermissionError(f"access denied for {key}")
    except PermissionError:
        get_run_logger().exception("the call failed")


@task
def denied() -> None:
    key = AwsCredentials.load("aws").aws_secret_access_key.get_secret_value()
    raise PermissionError(f"denied for {key}")  # the task run's Failed state quotes it


@flow(log_prints=True)
def leaky() -> str:
    logger = get_run_logger()
    password = Secret.load("db-password").get()
    print(f"connecting with password={password}")
    token = Secret.load("api-token").get()["token"]
    logger.info("token is %s", token)
    logger.warning("slack hook: %s", SlackWebhook.load("alerts").url.get_secret_value())
    use_cloud_keys()
    assert denied(return_state=True).is_failed()
    return flow_run.id


if __name__ == "__main__":
    with open(sys.argv[1], "w") as fh:
        fh.write(leaky())
