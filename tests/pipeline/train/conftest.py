"""Training fixtures: the isolated settings and a processed daily series to train on."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.config import Settings, get_settings
from pipeline.series import SeriesId
from tests.helpers.prices import random_walk_prices
from tests.helpers.processed import write_processed


@pytest.fixture
def settings() -> Settings:
    return get_settings()


@pytest.fixture
def y(settings: Settings) -> pd.Series:
    """200 daily prices of bitcoin-usd-1d, written as processed data."""
    prices = random_walk_prices(200)
    write_processed(settings.data_dir, prices, SeriesId("bitcoin", "usd", "1d"))
    return prices
