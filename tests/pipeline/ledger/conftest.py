"""Every ledger test runs twice: on an SQLite file and on a real PostgreSQL server.

The server is a throw-away cluster (initdb in a temporary folder, a free port on 127.0.0.1)
started once per session and removed afterwards; each test gets its own database. Tests skip on
PostgreSQL only when no PostgreSQL server binaries exist on the machine (CI installs them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.ledger.db import Ledger, open_ledger
from tests.helpers.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty ledger database: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    yield server.url(name)
    server.drop_database(name)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    opened = open_ledger(url=ledger_url)
    yield opened
    opened.close()
