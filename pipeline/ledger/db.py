"""Opening the ledger: the database URL, the engine, and the schema upgrade on open.

``LEDGER_URL`` picks the database; unset, it is an SQLite file beside the models
(``<MODELS_DIR>/ledger.sqlite3``) in WAL mode with a busy timeout, so one writer and many readers
(the scheduler and the API workers) work at the same time. ``postgresql://`` (or
``postgres://``) URLs use the psycopg 3 driver. :func:`open_ledger` applies the Alembic migrations
shipped in ``migrations/`` up to the newest revision, so an older ledger upgrades in place; two
processes opening a new ledger at once serialise on a lock (a file lock beside an SQLite file, an
advisory lock on PostgreSQL).

Every write goes through :meth:`Ledger.writer` (one transaction; on SQLite ``BEGIN IMMEDIATE``,
so a writer never fails on a stale snapshot) and every read through :meth:`Ledger.reader` (one
transaction: a consistent snapshot, never a half-written issue).
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.logs import redact_url

logger = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite3"
#: The key of the PostgreSQL advisory lock held while migrating.
_PG_LOCK_KEY = 0x1ED6E5
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class LedgerError(PipelineError):
    """The ledger database is unreachable, refused a statement or holds an unknown schema."""


def ledger_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the configured ledger (``LEDGER_URL`` or the default SQLite file)."""
    if settings.ledger_url is not None and settings.ledger_url.get_secret_value():
        return driver_url(settings.ledger_url.get_secret_value())
    return f"sqlite:///{Path(settings.models_dir).resolve() / LEDGER_FILE}"


def driver_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` -> ``postgresql+psycopg://``; others unchanged."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def describe_url(url: str) -> str:
    """The URL without credentials (for messages): the SQLite path, or scheme://host[:port]."""
    return url if url.startswith("sqlite") else redact_url(url)


@dataclass
class Ledger:
    """An open ledger: the engine and the transactions to read and write it in."""

    engine: Engine
    where: str  # the URL without credentials

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def writer(self) -> Iterator[Connection]:
        """One write transaction (committed when the block ends, rolled back on an error)."""
        with self._translate("write"), self.engine.connect() as conn:
            conn = conn.execution_options(ledger_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """One read transaction: every query inside sees the same snapshot."""
        with self._translate("read"), self.engine.connect() as conn:
            if self.dialect == "postgresql":  # one snapshot for the whole transaction
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise LedgerError(
                f"ledger {self.where}: {what} failed ({type(_cause(exc)).__name__}: "
                f"{_first_line(exc)}); check that the database is reachable (LEDGER_URL) and "
                "retry: nothing recorded before is lost, the next sync records what is missing"
            ) from exc

    def close(self) -> None:
        self.engine.dispose()


def _cause(exc: SQLAlchemyError) -> BaseException:
    orig = getattr(exc, "orig", None)
    return orig if isinstance(orig, BaseException) else exc


def _first_line(exc: SQLAlchemyError) -> str:
    text_ = str(_cause(exc))
    return text_.strip().splitlines()[0] if text_.strip() else "no detail"


def make_engine(url: str, busy_timeout: float = 30.0) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout, foreign keys and real
    transactions (SQLAlchemy's recipe: the driver's own transaction handling off, BEGIN emitted
    by us)."""
    try:
        parsed = make_url(driver_url(url))
    except ArgumentError as exc:
        raise LedgerError(f"LEDGER_URL is not a database URL ({exc})") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": busy_timeout})
        _sqlite_events(engine, busy_timeout)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise LedgerError(
            f"LEDGER_URL: unsupported database {parsed.get_backend_name()!r}; use postgresql://... "
            "or sqlite:///path"
        )
    return create_engine(
        parsed,
        pool_pre_ping=True,
        connect_args={"connect_timeout": max(1, int(busy_timeout))},
    )


def _sqlite_events(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("ledger_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _alembic_config(conn: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    head = ScriptDirectory(str(_MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` (under a lock: one process migrates at a time)."""
    with _migration_lock(engine), engine.connect() as conn:
        conn = conn.execution_options(ledger_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            command.upgrade(_alembic_config(conn), revision)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def open_ledger(settings: Settings | None = None, *, url: str | None = None) -> Ledger:
    """Open (and create or upgrade) the ledger of ``settings`` or at ``url``.

    Raises :class:`LedgerError` when the database cannot be reached or its schema is newer than
    this code.
    """
    if url is None:
        if settings is None:
            from pipeline.config import get_settings

            settings = get_settings()
        url = ledger_url(settings)
    timeout = settings.ledger_busy_timeout_seconds if settings is not None else 30.0
    engine = make_engine(url, timeout)
    ledger = Ledger(engine, describe_url(driver_url(url)))
    known = {s.revision for s in ScriptDirectory(str(_MIGRATIONS)).walk_revisions()}
    try:
        with ledger._translate("open"):
            current = current_revision(engine)
            if current is not None and current not in known:
                raise LedgerError(
                    f"ledger {ledger.where}: schema revision {current} is newer than this code; "
                    "upgrade the pipeline"
                )
            if current != head_revision():
                logger.info("ledger %s: migrating %s -> %s", ledger.where, current, head_revision())
                upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return ledger
