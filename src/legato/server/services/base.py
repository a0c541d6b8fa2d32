"""The server's background services: a :class:`Service` does one piece of periodic work
(``run_once``); a :class:`ServiceRunner` runs each service in a daemon thread of its own, every
``interval`` seconds, on one replica at a time.

Leadership. Several server replicas may share one PostgreSQL database; each service runs on only
one of them at a time. A replica's loop, on every tick, tries to become the service's *leader*:

* on **PostgreSQL** by taking a session-level advisory lock (``pg_try_advisory_lock``) whose key
  is derived from the service's name, on a connection of its own that it keeps open while it
  leads. If the leader's process dies its connection closes, PostgreSQL frees the lock, and
  another replica takes it on its next tick. A leader checks its connection on every tick: if
  the connection was lost (a database restart), so was the lock, and it stops leading.
* on **SQLite** (one machine) with an exclusive, non-blocking ``flock`` on a file next to the
  database, ``<database file>.services.<name>.lock``, kept open while leading. The kernel frees
  it when the process dies. An in-memory database has no file: the lock is per process.

An exception in ``run_once`` is logged (logger ``legato.server.services``) with the service's
name and the loop goes on: it never kills the thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("legato.server.services")


class Service:
    """One periodic piece of work. Subclasses set ``name`` and ``interval`` and implement
    :meth:`run_once`; they may override :meth:`enabled`."""

    #: unique among services; also names the service's lock
    name: str = "service"
    #: seconds between the end of one run and the start of the next
    interval: float = 60.0

    def enabled(self, settings: Any) -> bool:
        """Whether this service should run with these settings (default: always)."""
        return True

    def run_once(self, db: Any) -> None:
        """Do the work once, synchronously, in the service's own thread. ``db`` is the server's
        :class:`legato.store.database.Database`."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} every {self.interval:g} s>"


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL's advisory lock keys are bigint)."""
    digest = hashlib.sha256(f"legato.server.service:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leadership:
    """Who runs a service: ``acquire()`` returns whether this runner leads it now."""

    held = False

    def acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


class PostgresLeadership(Leadership):
    """A session-level advisory lock on a dedicated connection (not from the pool: closing it
    must really end the session, so that a lock can never linger in a pooled connection)."""

    def __init__(self, url: str, name: str) -> None:
        import sqlalchemy as sa

        self.key = lock_key(name)
        self._engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self._conn: Any = None

    def _connection(self) -> Any:
        if self._conn is None:
            # autocommit: the session holds the lock, no transaction stays open
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def acquire(self) -> bool:
        import sqlalchemy as sa

        try:
            conn = self._connection()
            if self.held:
                conn.exec_driver_sql("SELECT 1")  # alive: the session, and so the lock, is ours
                return True
            self.held = bool(
                conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            )
            return self.held
        except Exception:
            # the connection is gone (and with it any lock it held): start afresh next tick
            self._drop()
            raise

    def _drop(self) -> None:
        self.held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def release(self) -> None:
        import sqlalchemy as sa

        if self._conn is not None and self.held:
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            except Exception:  # noqa: BLE001 - closing the session frees it anyway
                pass
        self.held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self._engine.dispose()


_memory_leaders: set[str] = set()
_memory_lock = threading.Lock()


class FileLeadership(Leadership):
    """An exclusive non-blocking lock on ``path`` (flock; msvcrt.locking on Windows). Each
    instance opens the file itself, so two runners in one process exclude each other too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self.held:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_file(fd)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        self.held = True
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        self.held = False
        if fd is not None:
            try:
                _unlock_file(fd)
            finally:
                os.close(fd)


class ProcessLeadership(Leadership):
    """For an in-memory database (one process): one leader per service name in this process."""

    def __init__(self, name: str) -> None:
        self.name = name

    def acquire(self) -> bool:
        if not self.held:
            with _memory_lock:
                if self.name not in _memory_leaders:
                    _memory_leaders.add(self.name)
                    self.held = True
        return self.held

    def release(self) -> None:
        if self.held:
            with _memory_lock:
                _memory_leaders.discard(self.name)
            self.held = False


try:
    import fcntl

    def _lock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _lock_file(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock_file(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def leadership_for(db: Any, name: str) -> Leadership:
    """The right kind of lock for ``db``'s backend."""
    if not db.is_sqlite:
        return PostgresLeadership(db.url, name)
    if db.path is None:
        return ProcessLeadership(name)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return FileLeadership(db.path.with_name(f"{db.path.name}.services.{safe}.lock"))


class _Slot:
    """One service in a runner: its thread, its lock, its counters."""

    def __init__(self, service: Service, leadership: Leadership) -> None:
        self.service = service
        self.leadership = leadership
        self.thread: threading.Thread | None = None
        self.runs = 0
        self.failures = 0
        self.last_run: float | None = None  # time.time() of the last completed run
        self.last_error: str | None = None


class ServiceRunner:
    """Runs services in daemon threads: ``start()`` once, ``stop()`` at shutdown."""

    def __init__(self, db: Any, services: Iterable[Service], settings: Any = None) -> None:
        if settings is None:
            from ...settings import get_settings

            settings = get_settings()
        self.db = db
        self.settings = settings
        self._slots: dict[str, _Slot] = {}
        for svc in services:
            if svc.name in self._slots:
                raise ValueError(f"two services are named {svc.name!r}; names must be unique")
            if not svc.enabled(settings):
                log.debug("Service %r is disabled by the settings", svc.name)
                continue
            self._slots[svc.name] = _Slot(svc, leadership_for(db, svc.name))
        self._stop = threading.Event()
        self._started = False

    @property
    def services(self) -> list[Service]:
        return [slot.service for slot in self._slots.values()]

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._stop.clear()
        for name, slot in self._slots.items():
            slot.thread = threading.Thread(
                target=self._loop, args=(slot,), name=f"legato-service-{name}", daemon=True
            )
            slot.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every loop (a run in progress finishes first, up to ``timeout`` seconds in all)
        and give up every lock."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for slot in self._slots.values():
            if slot.thread is not None:
                slot.thread.join(max(0.0, deadline - time.monotonic()))
                if slot.thread.is_alive():
                    log.warning(
                        "Service %r did not stop within %g s; it stops after its current run",
                        slot.service.name,
                        timeout,
                    )
        self._started = False

    def is_leader(self, name: str) -> bool:
        """Whether this runner leads (runs) the service ``name`` right now."""
        slot = self._slots.get(name)
        return bool(slot and slot.leadership.held)

    def run_count(self, name: str) -> int:
        """How many runs of ``name`` this runner completed without an exception."""
        slot = self._slots.get(name)
        return slot.runs if slot else 0

    def status(self) -> dict[str, dict[str, Any]]:
        """Per service: leader here?, completed runs, failed runs, last run time, last error."""
        return {
            name: {
                "leader": slot.leadership.held,
                "interval": slot.service.interval,
                "runs": slot.runs,
                "failures": slot.failures,
                "last_run": slot.last_run,
                "last_error": slot.last_error,
            }
            for name, slot in self._slots.items()
        }

    def _loop(self, slot: _Slot) -> None:
        svc = slot.service
        try:
            while not self._stop.is_set():
                self._tick(slot)
                if self._stop.wait(max(svc.interval, 0.0)):
                    break
        finally:
            try:
                slot.leadership.release()
            except Exception:  # noqa: BLE001
                log.exception("Service %r: releasing its lock failed", svc.name)

    def _tick(self, slot: _Slot) -> None:
        svc = slot.service
        try:
            was = slot.leadership.held
            leader = slot.leadership.acquire()
        except Exception as exc:  # noqa: BLE001 - e.g. the database is unreachable: try again
            log.warning("Service %r: cannot check leadership (%s); trying again", svc.name, exc)
            return
        if leader != was:
            log.info("Service %r: %s", svc.name, "now leading" if leader else "no longer leading")
        if not leader or self._stop.is_set():
            return
        try:
            svc.run_once(self.db)
        except Exception as exc:  # noqa: BLE001 - logged; the loop goes on
            slot.failures += 1
            slot.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("Service %r failed: %s", svc.name, exc)
        else:
            slot.runs += 1
            slot.last_run = time.time()
