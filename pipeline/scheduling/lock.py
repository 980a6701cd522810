"""The lock that lets one cycle, refresh or job run at a time in a deployment.

* Always: an exclusive ``flock`` on ``<MODELS_DIR>/.retrain.lock``. The holder's pid is written
  in the file and the OS releases the lock if the holder crashes. It keeps apart the processes
  of one host (and of hosts sharing the folder on a filesystem whose locks work across hosts).
* With ``LEDGER_URL=postgresql://…``, also: a PostgreSQL session advisory lock
  (``pg_try_advisory_lock``) in the ledger's database, taken on a connection of its own that
  stays open for the whole cycle. Every scheduler, refresh and job using that database is kept
  apart, on any host and whatever its ``MODELS_DIR``. When the holder dies (killed, crashed, its
  host lost), PostgreSQL ends its session and the lock with it. The holder names itself in the
  session's ``application_name`` (job, pid, host): that is how a refused process names it.

A held lock raises :class:`LockBusyError` (exit code 3, nothing was done) naming the holder. A
PostgreSQL server that cannot be reached does not stop the cycle (as for the ledger itself): a
WARNING says that other hosts are not kept apart, and the flock alone is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.ledger.db import describe_url, ledger_url

logger = logging.getLogger(__name__)

LOCK_FILE = ".retrain.lock"
#: What takes the lock, and the kinds of run history records: a cycle and a refresh.
CYCLE, REFRESH = "cycle", "refresh"
#: Mixed into the PostgreSQL advisory lock key (with the models location, see lock_key).
LOCK_NAMESPACE = b"crypto-forecast/cycle-lock/1\0"
#: The prefix of the lock connection's application_name (how holders are found and named).
APP_PREFIX = "pipeline-lock"
#: PostgreSQL truncates application_name to 63 bytes.
_APP_MAX = 63
#: Server-side TCP keepalives of the lock session (s): a lost host's lock ends within ~2 min.
_KEEPALIVE = {"tcp_keepalives_idle": 60, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 6}
_APP_RE = re.compile(rf"^{APP_PREFIX} (?P<job>\S+) pid (?P<pid>\d+) host (?P<host>.*)$")


class LockBusyError(PipelineError):
    """Another retraining cycle holds the lock (exit code 3: nothing was done)."""

    exit_code = 3


#: The exit code of a cycle that found the lock held.
EXIT_LOCKED = LockBusyError.exit_code


class _Unreachable(Exception):
    """The advisory lock's database could not be reached (the flock alone is held then)."""


@contextlib.contextmanager
def cycle_lock(settings: Settings, job: str = CYCLE) -> Iterator[None]:
    """Hold the deployment's lock for the block: the ``flock``, and the advisory lock when the
    ledger is on PostgreSQL. ``job`` (``cycle``, ``refresh``, ``backtest``…) names the holder.
    Raises :class:`LockBusyError` naming the holder when another one has either."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(file_lock(settings, job))
        conninfo = postgres_conninfo(settings)
        if conninfo is not None:
            try:
                stack.enter_context(advisory_lock(settings, conninfo, job))
            except _Unreachable as exc:
                logger.warning(
                    "%s: only the local lock %s is held, so a scheduler on another host is not "
                    "kept apart until the database answers",
                    exc,
                    Path(settings.models_dir) / LOCK_FILE,
                )
        yield


def describe_lock(settings: Settings) -> str:
    """Which lock :func:`cycle_lock` takes (for ``--dry-run``), without credentials."""
    local = f"flock {Path(settings.models_dir) / LOCK_FILE}"
    conninfo = postgres_conninfo(settings)
    if conninfo is None:
        return local
    where = describe_url(conninfo)
    return f"{local} and PostgreSQL advisory lock {lock_key(settings)} in {where}"


def postgres_conninfo(settings: Settings) -> str | None:
    """The libpq URL of the ledger when it is on PostgreSQL; ``None`` otherwise (also for a
    ``LEDGER_URL`` that is no URL: the ledger reports that itself)."""
    try:
        url = make_url(ledger_url(settings))
    except ArgumentError:
        return None
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def lock_key(settings: Settings) -> int:
    """The advisory lock key: a constant and the models location, as a signed 64-bit integer.

    A local ``MODELS_DIR`` path is left out (each host may mount the models elsewhere, or hold
    a copy of its own), so every scheduler of one ledger database shares one lock; the object
    store URL that ``MODELS_DIR`` was set to (``s3://bucket/prefix``, the same on every host)
    is mixed in.
    """
    location = settings.store_url("models_dir") or ""
    digest = hashlib.sha256(LOCK_NAMESPACE + location.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _busy(where: str, holder: str) -> LockBusyError:
    running = "refresh" if holder.endswith(f"({REFRESH})") else "retraining cycle"
    return LockBusyError(
        f"another {running} is running (lock {where} held by {holder}); nothing was done"
    )


@contextlib.contextmanager
def file_lock(settings: Settings, job: str = CYCLE) -> Iterator[None]:
    """An exclusive ``flock`` on ``<MODELS_DIR>/.retrain.lock``: released by the OS even if
    the process crashes. ``job`` is written beside the holder's pid."""
    path = Path(settings.models_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fh: TextIO = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole cycle
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise _busy(str(path), fh.read().strip() or "unknown") from None
        fh.seek(0)
        fh.truncate()
        since = datetime.now(UTC).isoformat(timespec="seconds")
        fh.write(f"pid {os.getpid()} since {since}" + (f" ({job})" if job != CYCLE else ""))
        fh.flush()
        yield
    finally:
        fh.close()


def _application_name(job: str) -> str:
    name = f"{APP_PREFIX} {job} pid {os.getpid()} host {socket.gethostname()}"
    return name.encode("ascii", "replace")[:_APP_MAX].decode("ascii")


@contextlib.contextmanager
def advisory_lock(settings: Settings, conninfo: str, job: str = CYCLE) -> Iterator[None]:
    """``pg_try_advisory_lock`` on a dedicated autocommit session, held until the block ends
    (then unlocked and closed; a dead process's session, and lock, end with it)."""
    import psycopg

    key = lock_key(settings)
    where = f"PostgreSQL advisory lock {key} in {describe_url(conninfo)}"
    timeout = max(1, int(settings.ledger_busy_timeout_seconds))
    try:
        conn = psycopg.connect(
            conninfo,
            autocommit=True,
            connect_timeout=timeout,
            application_name=_application_name(job),
        )
    except psycopg.Error as exc:
        raise _Unreachable(
            f"the cycle lock ({where}) could not be taken: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    try:
        _keep_alive(conn)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not (row and row[0]):
            raise _busy(where, _holder(conn, key))
        logger.debug("cycle lock taken: %s", where)
        try:
            yield
        finally:
            _unlock(conn, key, where)
    finally:
        conn.close()


def _keep_alive(conn: Any) -> None:
    """Server-side keepalives (a lost host's session ends), and no idle timeout on the lock."""
    for name, value in _KEEPALIVE.items():
        conn.execute(f"SET {name} = {int(value)}")
    if conn.info.server_version >= 140000:
        conn.execute("SET idle_session_timeout = 0")


def _unlock(conn: Any, key: int, where: str) -> None:
    import psycopg

    try:
        row = conn.execute("SELECT pg_advisory_unlock(%s)", (key,)).fetchone()
    except psycopg.Error as exc:
        logger.warning(
            "the cycle lock (%s) was lost before the end (%s: %s): another cycle may have run "
            "at the same time",
            where,
            type(exc).__name__,
            _first_line(exc),
        )
        return
    if not (row and row[0]):
        logger.warning("the cycle lock (%s) was no longer held at the end", where)


def _holder(conn: Any, key: int) -> str:
    """Who holds advisory lock ``key``: ``pid P on host H since T (job)``, as it named itself."""
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    row = conn.execute(
        "SELECT a.application_name, a.backend_start, host(a.client_addr), l.pid "
        "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (high, low),
    ).fetchone()
    if row is None:
        return "a process that has just released it"
    app, started, client, backend = row
    match = _APP_RE.match(app or "")
    if match is None:
        return f"PostgreSQL backend {backend} ({app or 'no application name'})"
    since = f" since {started.astimezone(UTC).isoformat(timespec='seconds')}" if started else ""
    suffix = f" ({match['job']})" if match["job"] != CYCLE else ""
    origin = f", connected from {client}" if client else ""
    return f"pid {match['pid']} on host {match['host']}{since}{origin}{suffix}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"
