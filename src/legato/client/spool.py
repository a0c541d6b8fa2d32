"""The outage spool: history batches a process could not deliver to its server, kept on disk
until they can be.

A process talking to a server waits an outage out (``LEGATO_API_OUTAGE_WINDOW_SECONDS``) with
its unsent rows in memory. Past the window, each batch it cannot send is appended to its spool
file instead, ``LEGATO_HOME/spool/<server>-<host>-<pid>.jsonl`` (one JSON line a batch, after a
header naming the server), and every later batch follows it there so that the server receives
them in the order they were made. The process sends its own spool as soon as the server answers
again; a spool left by a process that exited is sent by the next Legato process that talks to
that server from this machine (an HTTP client as it starts, an agent as it polls).

A spool file is claimed for sending by renaming it (atomic): two processes never send one file.
The server skips the rows of a batch it already holds, so a spool sent twice (its sender killed
half-way) writes nothing twice. A batch the server refuses (4xx: nothing can make it pass) is
moved to ``spool/refused/`` and named in the log, not retried forever.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from ..exceptions import LegatoError, ServerUnreachableError
from ..processes import host, pid_alive

log = logging.getLogger("legato.client")

_NAME = re.compile(r"^(?P<server>[0-9a-f]{12})-(?P<host>.+)-(?P<pid>[0-9]+)\.jsonl"
                   r"(?:\.sending-(?P<sender>[0-9]+))?$")


def server_key(api_url: str) -> str:
    return hashlib.sha256(api_url.rstrip("/").encode()).hexdigest()[:12]


class Spool:
    """This process's spool for one server, and the sending of spools left by others."""

    def __init__(self, home: Path, api_url: str, dumps: Any) -> None:
        self.dir = home / "spool"
        self.api_url = api_url.rstrip("/")
        self.key = server_key(self.api_url)
        # the host as flow runs record it (a container's pid namespace included): a pid is
        # judged only by a process that numbers processes the same way
        self.host = re.sub(r"[^A-Za-z0-9_.]", "_", host())[:100] or "host"
        self.path = self.dir / f"{self.key}-{self.host}-{os.getpid()}.jsonl"
        self._dumps = dumps  # the HTTP client's JSON encoder (datetimes as ISO strings)
        self._pending: list[bytes] = []  # appended and not yet sent, in order
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def append(self, payload: dict[str, Any]) -> None:
        """Keep one batch on disk (synced: the process may be killed next)."""
        line = self._dumps(payload)
        with self._lock:
            new = not self.path.exists()
            if new:
                self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                if new:
                    header = {"legato_spool": 1, "api_url": self.api_url, "pid": os.getpid()}
                    os.write(fd, json.dumps(header).encode() + b"\n")
                os.write(fd, line + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._pending.append(line)
            if new:
                log.warning("The Legato server at %s cannot be reached: this process's run "
                            "history is kept in %s until it can be sent.", self.api_url,
                            self.path)

    def send_own(self, transport: Any) -> bool:
        """Send this process's spooled batches, in order; True once none is left. Stops at
        the first batch the server does not take (unreachable: kept for later)."""
        with self._lock:
            while self._pending:
                transport.request("POST", "/history/batch", json.loads(self._pending[0]))
                self._pending.pop(0)
            self.path.unlink(missing_ok=True)
            return True

    # -- spools of processes that have exited ----------------------------------------------------
    def send_left(self, transport: Any) -> int:
        """Send every spool for this server left on this machine by a process that has exited;
        how many batches were sent. A file that cannot be sent now is kept for later."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return 0
        sent = 0
        for name in sorted(names):
            m = _NAME.match(name)
            if (m is None or m["server"] != self.key or m["host"] != self.host
                    or int(m["pid"]) == os.getpid() or pid_alive(int(m["pid"]))
                    or (m["sender"] and pid_alive(int(m["sender"])))):
                continue
            claimed = self.dir / f"{m['server']}-{m['host']}-{m['pid']}.jsonl.sending-{os.getpid()}"
            try:
                os.rename(self.dir / name, claimed)
            except FileNotFoundError:
                continue  # another process claimed it first
            sent += self._send_file(claimed, self.dir / name.split(".sending-")[0], transport)
        return sent

    def _send_file(self, claimed: Path, original: Path, transport: Any) -> int:
        lines = claimed.read_bytes().splitlines()
        header = json.loads(lines[0]) if lines else {}
        if header.get("api_url") != self.api_url:
            os.rename(claimed, original)  # (a hash collision: not this server's)
            return 0
        sent = 0
        for i, line in enumerate(lines[1:], start=1):
            if not line.strip():
                continue
            try:
                transport.request("POST", "/history/batch", json.loads(line))
            except ServerUnreachableError:
                self._keep(claimed, original, [lines[0], *lines[i:]])
                return sent
            except LegatoError as exc:
                refused = self.dir / "refused"
                refused.mkdir(exist_ok=True, mode=0o700)
                os.rename(claimed, refused / original.name)
                log.error("The Legato server at %s refused a spooled history batch (%s); the "
                          "spool was moved to %s.", self.api_url, exc, refused / original.name)
                return sent
            sent += 1
        claimed.unlink(missing_ok=True)
        log.warning("Sent the run history that a process left in the spool %s (%d batches).",
                    original, sent)
        return sent

    @staticmethod
    def _keep(claimed: Path, original: Path, lines: list[bytes]) -> None:
        """Put the unsent rest back under the original name, for the next sender."""
        tmp = claimed.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\n".join(lines) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, original)
        claimed.unlink(missing_ok=True)
