"""Fixtures of the ingest tests: a real HTTP server on 127.0.0.1 imitating CoinGecko, and no
logging set-up by the CLI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.config import get_settings
from pipeline.ingest import cli
from tests.helpers.coingecko import FakeCoinGecko


@pytest.fixture(autouse=True)
def _no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ingest ``main()`` configures logging for a terminal; keep pytest's own handlers."""
    monkeypatch.setattr(cli, "configure_logging", lambda *a, **k: None)


@pytest.fixture
def fake_coingecko(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCoinGecko]:
    """A running :class:`FakeCoinGecko`; ``COINGECKO_BASE_URL`` points at it."""
    fake = FakeCoinGecko().start()
    monkeypatch.setenv("COINGECKO_BASE_URL", fake.base_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("COINGECKO_API_KEY", raising=False)
    get_settings.cache_clear()
    try:
        yield fake
    finally:
        fake.stop()
        get_settings.cache_clear()
