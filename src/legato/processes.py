"""Which process runs a flow run, and whether a process is still alive.

A flow run records its host and process id. ``host`` is the machine's name, followed on Linux by
``/pidns:<inode>`` when the process lives in a process-id namespace other than the machine's own
(a container): two containers sharing a host name (``--network host``) number their processes
separately, so a pid only means something to a process of the same namespace.
"""

from __future__ import annotations

import functools
import os
import socket

# the kernel's own (initial) pid namespace has this fixed inode number (PROC_PID_INIT_INO)
_INIT_PID_NAMESPACE = "pid:[4026531836]"


@functools.cache
def host() -> str:
    """This process's host, as recorded on the flow runs it runs (at most 255 characters)."""
    name = socket.gethostname() or "localhost"
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux, or no /proc
        ns = _INIT_PID_NAMESPACE
    if ns != _INIT_PID_NAMESPACE:
        suffix = "/pidns:" + ns.removeprefix("pid:[").rstrip("]")
        return name[: 255 - len(suffix)] + suffix
    return name[:255]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host (and namespace) is alive. A zombie (killed, not yet
    reaped by its parent) is not."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return True  # cannot tell: treat as alive (the heartbeat rule still applies)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # it just ended, or there is no /proc (not Linux: cannot tell more)
        return not os.path.isdir("/proc/self")
    # "pid (comm) S ...": the state follows the last ')' (comm may hold spaces and parentheses)
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")
