"""Fixtures shared by every test: isolated settings and the optional real data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import get_settings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"

# the `fake_coingecko` fixture: a real HTTP server on 127.0.0.1 imitating CoinGecko
pytest_plugins = ["tests.fakes.coingecko"]


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
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` with the real price history; skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real price history is only beside CI)")
    return SHARED_DATA


def random_walk_prices(
    n: int = 400, freq: str = "1D", seed: int = 0, start: str = "2021-01-01"
) -> pd.Series:
    """A positive price series with heavy-ish tails, indexed by a regular UTC grid."""
    rng = np.random.default_rng(seed)
    returns = 0.0005 + 0.03 * rng.standard_t(df=5, size=n) / np.sqrt(5 / 3)
    prices = 20000.0 * np.exp(np.cumsum(returns))
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="ds")
    return pd.Series(prices, index=index, name="y")
