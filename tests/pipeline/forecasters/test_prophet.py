"""Prophet made fair: no spurious seasonality on daily prices, a trend that can bend
near the end of the history, and intervals that include the random-walk spread of prices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ForecastError
from pipeline.forecasters.prophet_model import ProphetForecaster
from tests.helpers.prices import price_series, random_walk_prices

pytestmark = pytest.mark.slow


def daily(log_prices: np.ndarray) -> pd.Series:
    return price_series(log_prices, start="2019-01-01", log=True)


@pytest.fixture(scope="module")
def three_years() -> pd.Series:
    """1,095 daily random-walk prices with 4% daily log returns (crypto-like)."""
    rng = np.random.default_rng(7)
    return daily(np.log(100.0) + np.cumsum(0.04 * rng.standard_normal(1095)))


@pytest.fixture(scope="module")
def fitted(three_years: pd.Series) -> ProphetForecaster:
    return ProphetForecaster().fit(three_years)


def test_no_seasonality_on_daily_prices(fitted: ProphetForecaster) -> None:
    assert fitted.fitted_params()["seasonalities"] == []
    forced = ProphetForecaster(yearly_seasonality=True)
    assert forced.seasonality_for(pd.Timedelta(days=1))["yearly"] is True
    hourly = ProphetForecaster().seasonality_for(pd.Timedelta(hours=1))
    assert hourly == {"daily": True, "weekly": True, "yearly": False}


def test_trend_can_turn_in_the_last_fifth_of_the_history() -> None:
    # Log price rises for 990 days, then falls for 105 (the last 10% of the window). With
    # Prophet's default changepoint_range=0.8 no changepoint may fall after day 876, the last
    # trend segment averages the rise and the fall, and the forecast starts far from the price.
    rng = np.random.default_rng(1)
    trend = np.r_[np.linspace(0.0, 2.0, 990), 2.0 - np.linspace(0.0, 0.6, 106)[1:]]
    y = daily(np.log(100.0) + trend + 0.01 * rng.standard_normal(trend.size))
    first = ProphetForecaster(yearly_seasonality=False).fit(y).predict(1)["mean"].iloc[0]
    assert abs(np.log(first / y.iloc[-1])) < 0.05


def test_intervals_include_the_random_walk_spread(
    three_years: pd.Series, fitted: ProphetForecaster
) -> None:
    sd = np.std(np.diff(np.log(three_years.to_numpy())), ddof=1)
    assert fitted.fitted_params()["log_return_sd"] == pytest.approx(sd)
    fc = fitted.predict(30, levels=(95,))
    log_width = np.log(fc["upper_95"] / fc["lower_95"]).to_numpy()
    steps = np.arange(1, 31)
    # At least the naive baseline's 95% width 2 * 1.96 * sd * sqrt(k) (10% sampling slack).
    assert np.all(log_width >= 0.9 * 2 * 1.96 * sd * np.sqrt(steps))
    assert log_width[-1] > log_width[0]
    # Prophet alone: much narrower at a month's horizon.
    plain = ProphetForecaster(random_walk_spread=False).fit(three_years).predict(30, levels=(95,))
    plain_width = np.log(plain["upper_95"] / plain["lower_95"]).to_numpy()
    assert plain_width[-1] < 0.6 * log_width[-1]
    # The centre is Prophet's either way.
    np.testing.assert_allclose(plain["mean"], fc["mean"])


def test_saved_model_with_spread_predicts_identically(
    tmp_path: Path, fitted: ProphetForecaster
) -> None:
    before = fitted.predict(10)
    fitted.save(tmp_path)
    loaded = ProphetForecaster.load(tmp_path, fitted.get_params())
    pd.testing.assert_frame_equal(loaded.predict(10), before, check_exact=True)


@pytest.mark.parametrize("bad", [0.0, 1.5])
def test_invalid_changepoint_range(bad: float) -> None:
    with pytest.raises(ForecastError, match="changepoint_range must be in"):
        ProphetForecaster(changepoint_range=bad)


def test_short_random_walk_still_fits() -> None:
    model = ProphetForecaster().fit(random_walk_prices(n=60, seed=2))
    fc = model.predict(5)
    assert np.all(np.isfinite(fc.drop(columns="ds").to_numpy()))


def test_model_saved_before_the_spread_loads_as_plain_prophet(
    tmp_path: Path, three_years: pd.Series, fitted: ProphetForecaster
) -> None:
    fitted.save(tmp_path)
    (tmp_path / "prophet_spread.json").unlink()
    loaded = ProphetForecaster.load(tmp_path, fitted.get_params())
    plain = ProphetForecaster(random_walk_spread=False).fit(three_years)
    pd.testing.assert_frame_equal(loaded.predict(5), plain.predict(5), rtol=1e-6)
