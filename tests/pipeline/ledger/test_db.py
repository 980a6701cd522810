"""Opening the ledger: URLs, the schema upgrade in place, refusals with clear messages."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from pipeline.config import load_settings
from pipeline.ledger.db import (
    LEDGER_FILE,
    LedgerError,
    current_revision,
    driver_url,
    head_revision,
    ledger_url,
    make_engine,
    open_ledger,
    upgrade,
)
from pipeline.ledger.schema import issues, steps
from pipeline.logs import RedactingFilter, secret_values
from tests.helpers.processes import free_port

NOW = datetime(2021, 3, 1, tzinfo=UTC)


def test_default_is_an_sqlite_file_beside_the_models(tmp_path: Path) -> None:
    settings = load_settings(models_dir=tmp_path / "models")
    assert ledger_url(settings) == f"sqlite:///{(tmp_path / 'models' / LEDGER_FILE).resolve()}"
    ledger = open_ledger(settings)
    with ledger.reader() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    ledger.close()
    assert (tmp_path / "models" / LEDGER_FILE).is_file()


def test_postgres_urls_use_psycopg() -> None:
    assert driver_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert driver_url("postgres://u@h:5433/db") == "postgresql+psycopg://u@h:5433/db"
    assert driver_url("sqlite:///x.db") == "sqlite:///x.db"
    settings = load_settings(ledger_url="postgresql://u:p@h/db")
    assert ledger_url(settings) == "postgresql+psycopg://u:p@h/db"
    with pytest.raises(LedgerError, match="unsupported database 'mysql'"):
        make_engine("mysql://u@h/db")


def test_the_ledger_url_password_is_redacted_from_logs() -> None:
    settings = load_settings(ledger_url="postgresql://ledger:s3cret-pass-77@db.internal/ledger")
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "cannot reach %s (password s3cret-pass-77)",
        ("postgresql://ledger:s3cret-pass-77@db.internal/ledger",), None,
    )  # fmt: skip
    RedactingFilter(secret_values(settings)).filter(record)
    assert "s3cret-pass-77" not in record.getMessage()


def test_unreachable_database_is_a_clear_error() -> None:
    url = f"postgresql://ledger:hunter2-secret@127.0.0.1:{free_port()}/ledger"
    with pytest.raises(LedgerError) as info:
        open_ledger(url=url)
    message = str(info.value)
    assert message.startswith("ledger postgresql+psycopg://127.0.0.1:")
    assert "open failed (OperationalError: connection failed" in message
    assert "hunter2-secret" not in message
    assert "check that the database is reachable (LEDGER_URL)" in message


def test_upgrade_from_the_first_revision_keeps_rows(ledger_url: str) -> None:
    engine = make_engine(ledger_url)
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))
        pk = conn.execute(
            insert(issues).values(
                series="bitcoin-usd-1d", model="naive", version="v1", issue_id="training",
                issued_at=NOW, origin=NOW, last_price=100.0, horizon=2, champion=True,
                forecast_sha256="a" * 64, model_sha256="b" * 64, path="/x", recorded_at=NOW,
            ).returning(issues.c.id)
        ).scalar_one()  # fmt: skip
        conn.execute(
            insert(steps),
            [
                {"issue": pk, "step": k, "ds": NOW, "mean": 100.0, "lower_80": 90.0,
                 "upper_80": 110.0, "lower_95": 80.0, "upper_95": 120.0}
                for k in (1, 2)
            ],
        )  # fmt: skip
    engine.dispose()
    ledger = open_ledger(url=ledger_url)
    assert current_revision(ledger.engine) == head_revision() != "0001"
    with ledger.reader() as conn:
        assert conn.execute(select(func.count()).select_from(steps)).scalar_one() == 2
        row = conn.execute(select(issues)).one()
        tables = set(ledger.engine.dialect.get_table_names(conn))
    assert row.issue_id == "training" and row.champion is True
    assert {"scores", "actuals", "corrections", "aggregates"} <= tables
    ledger.close()


def test_a_newer_schema_is_refused(ledger_url: str) -> None:
    ledger = open_ledger(url=ledger_url)
    with ledger.writer() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    ledger.close()
    with pytest.raises(LedgerError, match="schema revision 9999 is newer than this code"):
        open_ledger(url=ledger_url)
