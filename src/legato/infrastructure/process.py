"""Run a flow run as a local subprocess of the agent.

```python
from legato.infrastructure import Process

Process(working_dir="/srv/flows", env={"MY_SETTING": "1"}).save("local")
```

The child starts in a session (and process group) of its own, so ``kill`` reaches everything it
started: SIGTERM goes to the whole group, and whatever is still running after the grace period
gets SIGKILL. The identifier is ``pid:<pid>``; the pid is also the process group's id.
POSIX only (Linux, macOS).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Literal

from pydantic import Field

from ..exceptions import BlockError, LegatoTimeoutError
from .base import (
    DEPLOYED_ENTRYPOINT,
    FlowRunLaunch,
    Infrastructure,
    InfrastructureHandle,
    InfrastructureNotFound,
)

__all__ = ["Process", "ProcessHandle"]

_POLL_SECONDS = 0.05
# after SIGKILL the kernel tears the group down at once; this only bounds a stuck (D-state) one
_AFTER_SIGKILL_SECONDS = 10.0


class Process(Infrastructure):
    """Run the flow run in a new local process: the agent's environment, plus the launch's and
    this block's ``env``, in ``working_dir``. Its output goes to the agent's console when
    ``stream_output`` is set."""

    _block_type_name = "Process"
    _pool_types = ("process",)
    _code_example = (
        "from legato.infrastructure import Process\n\n"
        'process_block = Process.load("BLOCK_NAME")')

    type: Literal["process"] = Field(default="process", description="The infrastructure type.")
    working_dir: str | None = Field(
        default=None, title="Working directory",
        description="The directory the flow run starts in; empty: the agent's own.")
    stream_output: bool = Field(
        default=True, description="Show the flow run's stdout and stderr in the agent's "
        "output; off: discard them (the run's logs still reach Legato).")

    def _default_command(self, launch: FlowRunLaunch) -> list[str]:
        return [sys.executable, "-m", DEPLOYED_ENTRYPOINT, launch.flow_run_id]

    def start(self, launch: FlowRunLaunch) -> ProcessHandle:
        """Start the flow run's process (its own process group) and return at once."""
        command = self.resolved_command(launch)
        env = self.resolved_env(launch, base=dict(os.environ))
        cwd = self.working_dir
        if cwd is not None and not os.path.isdir(cwd):
            raise BlockError(f"The Process block's working_dir {cwd!r} is not a directory on "
                             "this machine; create it or change the block.")
        output = None if self.stream_output else subprocess.DEVNULL
        try:
            popen = subprocess.Popen(
                command, env=env, cwd=cwd, start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        except OSError as exc:
            raise BlockError(f"Could not start the flow run's process {command[0]!r}: "
                             f"{exc.strerror or exc}. Check the command and the PATH.") from None
        return ProcessHandle(popen)

    def kill(self, identifier: str, grace_seconds: float = 30) -> None:
        """Stop the process group ``pid:<pid>`` names: SIGTERM, then SIGKILL after
        ``grace_seconds``. Raises InfrastructureNotFound if no process of it is running."""
        pgid = parse_pid(identifier)
        if not group_alive(pgid):
            raise InfrastructureNotFound(
                f"No process of {identifier} is running on this machine (it finished, or was "
                "started on another machine).")
        kill_group(pgid, grace_seconds)


class ProcessHandle(InfrastructureHandle):
    """The flow run's process. Exit codes are the process's; a negative code ``-N`` means it was
    ended by signal ``N`` (-15 SIGTERM, -9 SIGKILL), as with :mod:`subprocess`."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.identifier = f"pid:{popen.pid}"

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise LegatoTimeoutError(
                f"The flow run's process {self.identifier} was still running after "
                f"{timeout} s.") from None

    def kill(self, grace_seconds: float = 30) -> None:
        kill_group(self.pid, grace_seconds, self.popen)
        self.popen.wait()


def parse_pid(identifier: str) -> int:
    """The pid in ``pid:<pid>``."""
    prefix, _, number = str(identifier).partition(":")
    if prefix != "pid" or not number.isdigit() or int(number) <= 1:
        raise BlockError(f"{identifier!r} is not a process identifier; it looks like "
                         "'pid:12345' (as the handle's identifier says).")
    return int(number)


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies, which have finished but
    wait for their parent to collect them, do not count)."""
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs (macOS): ask the kernel; a zombie-only group still answers
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # it ended while we looked
        # fields after the command name (which may hold spaces and parentheses)
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def kill_group(pgid: int, grace_seconds: float,
               popen: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM to the group, up to ``grace_seconds`` for all of it to end, then SIGKILL to what
    is left. A group that is already gone is fine."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    if _wait_group(pgid, max(0.0, float(grace_seconds)), popen):
        return
    _signal_group(pgid, signal.SIGKILL)
    _wait_group(pgid, _AFTER_SIGKILL_SECONDS, popen)


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise BlockError(f"Not allowed to signal the process group {pgid} ({exc.strerror}); "
                         "it belongs to another user.") from None
    return True


def _wait_group(pgid: int, seconds: float, popen: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if popen is not None:
            popen.poll()  # collect our own child so it does not linger as a zombie
        if not group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
