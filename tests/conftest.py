"""Fixtures shared by every test: isolated settings, an artifact store, the optional real data,
a real PostgreSQL server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import get_settings
from tests.helpers.paths import SHARED_DATA
from tests.helpers.postgres import PostgresServer, find_bin, start_server


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own data/models folders and no .env from the working tree."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("HTTP_BACKOFF_INITIAL", "0.01")
    monkeypatch.setenv("HTTP_BACKOFF_MAX", "0.05")
    monkeypatch.setenv("HTTP_RETRY_BUDGET", "5")
    monkeypatch.setenv("HTTP_READ_TIMEOUT", "2")
    # No CoinGecko call budget unless a test sets one (tests/pipeline/ingest/test_ratelimit.py).
    monkeypatch.setenv("COINGECKO_CALLS_PER_MINUTE", "0")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    """Undo what a ``main()`` that configures logging did to the root logger."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def store() -> ArtifactStore:
    """An empty artifact store in the test's own models folder (``MODELS_DIR``)."""
    return ArtifactStore(get_settings().models_dir)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` with the real price history; skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real price history is only beside CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL server on 127.0.0.1 for the whole session (each test creates its
    own database on it). Skips only when no server binaries are installed; a server that is
    installed but does not start fails the test."""
    if find_bin("initdb") is None or find_bin("pg_ctl") is None:
        pytest.skip("PostgreSQL tests skipped: no PostgreSQL server binaries (initdb, pg_ctl)")
    server = start_server()
    if isinstance(server, str):
        pytest.fail(f"PostgreSQL did not start: {server}")
    yield server
    server.stop()
