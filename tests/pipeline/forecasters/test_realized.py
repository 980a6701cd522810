"""Realized variance from intraday prices and the HAR-RV cumulative variance forecast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import UsageError
from pipeline.forecasters.realized import (
    daily_realized_variance,
    har_band,
    har_cumulative_variance,
)

NORMAL_80 = 1.2815515655446004
NORMAL_95 = 1.959963984540054


def hourly_prices(returns: np.ndarray, start: str = "2021-01-01") -> pd.Series:
    """Hourly prices from 100 whose log returns are ``returns`` (the first price has none)."""
    log_price = np.log(100.0) + np.concatenate([[0.0], np.cumsum(returns)])
    index = pd.date_range(start, periods=len(log_price), freq="1h", tz="UTC")
    return pd.Series(np.exp(log_price), index=index)


def regime_rv(calm_days: int, stressed_days: int, seed: int = 0) -> pd.Series:
    """Daily realized variances: a calm regime (1e-4 a day) then a persistent stressed one
    (1e-3), each day's figure noisy around its regime's level as a measured one is."""
    rng = np.random.default_rng(seed)
    level = np.r_[np.full(calm_days, 1e-4), np.full(stressed_days, 1e-3)]
    values = level * rng.lognormal(-0.045, 0.3, size=level.size)
    index = pd.date_range("2019-01-01", periods=level.size, freq="1D", tz="UTC")
    return pd.Series(values, index=index)


def test_realized_variance_sums_each_days_squared_log_returns() -> None:
    rng = np.random.default_rng(1)
    returns = rng.normal(0.0, 0.01, size=24 * 3)
    rv = daily_realized_variance(hourly_prices(returns))
    # the first day's first hour has no return (no price before it): that day is incomplete
    assert list(rv.index) == list(pd.to_datetime(["2021-01-02", "2021-01-03"], utc=True))
    for i, day in enumerate(rv.index, start=1):
        # the returns of day i are those ending at its hours 00:00 .. 23:00
        expected = float(np.sum(returns[24 * i - 1 : 24 * (i + 1) - 1] ** 2))
        assert rv[day] == pytest.approx(expected, rel=1e-9)


def test_a_day_with_a_missing_hour_is_left_out() -> None:
    prices = hourly_prices(np.full(24 * 4, 0.001))
    prices[pd.Timestamp("2021-01-03 10:00", tz="UTC")] = np.nan
    rv = daily_realized_variance(prices)
    assert pd.Timestamp("2021-01-03", tz="UTC") not in rv.index
    assert pd.Timestamp("2021-01-02", tz="UTC") in rv.index


def test_naive_times_are_utc_and_bad_prices_are_refused() -> None:
    prices = hourly_prices(np.full(48, 0.001))
    naive = prices.tz_localize(None)
    pd.testing.assert_series_equal(daily_realized_variance(naive), daily_realized_variance(prices))
    with pytest.raises(UsageError, match="positive"):
        daily_realized_variance(prices.where(prices.index != prices.index[5], 0.0))
    with pytest.raises(UsageError, match="DatetimeIndex"):
        daily_realized_variance(pd.Series([1.0, 2.0]))


def test_har_forecast_follows_the_persistent_recent_regime() -> None:
    rv = regime_rv(calm_days=600, stressed_days=200)
    origin = rv.index[-1] + pd.Timedelta(days=1)
    variance = har_cumulative_variance(rv, origin, 30, min_days=365)
    assert variance is not None
    per_day = variance / np.arange(1, 31)
    # after 200 stressed days the forecast is the stressed level, not the window's mean
    mean_level = float(rv.mean())
    assert per_day[0] == pytest.approx(1e-3, rel=0.2)
    assert per_day[-1] > 2 * mean_level > 2e-4
    assert np.all(np.diff(variance) > 0)  # cumulative: grows with every step


def test_har_forecast_uses_only_days_before_the_origin() -> None:
    rv = regime_rv(calm_days=500, stressed_days=100)
    origin = rv.index[450]
    before = har_cumulative_variance(rv, origin, 10)
    changed = rv.copy()
    changed[changed.index >= origin] *= 50.0  # a huge shock on and after the origin
    assert before is not None
    np.testing.assert_array_equal(har_cumulative_variance(changed, origin, 10), before)


def test_har_needs_enough_days_and_positive_variance() -> None:
    rv = regime_rv(calm_days=300, stressed_days=0)
    origin = rv.index[-1] + pd.Timedelta(days=1)
    assert har_cumulative_variance(rv, origin, 30, min_days=365) is None
    assert har_cumulative_variance(rv, origin, 30, min_days=250) is not None
    bad = rv.copy()
    bad.iloc[10] = 0.0
    with pytest.raises(UsageError, match="positive"):
        har_cumulative_variance(bad, origin, 30, min_days=250)
    with pytest.raises(UsageError, match="horizon"):
        har_cumulative_variance(rv, origin, 0)


def test_har_band_is_gaussian_in_log_price_around_the_last_price() -> None:
    variance = np.array([1e-4, 4e-4])
    band = har_band(200.0, variance)
    np.testing.assert_array_equal(band["mean"], [200.0, 200.0])
    sd = np.sqrt(variance)
    np.testing.assert_allclose(np.log(band["upper_80"] / 200.0), NORMAL_80 * sd, rtol=1e-12)
    np.testing.assert_allclose(np.log(200.0 / band["lower_95"]), NORMAL_95 * sd, rtol=1e-12)


def by_hand(rv: np.ndarray, k: int) -> float:
    """The step-``k`` forecast written out: rows i = 21 .. n-1-k regress log(rv[i+1] + ... +
    rv[i+k]) on (1, log rv[i], mean of log rv[i-4..i], mean of log rv[i-21..i]) by least
    squares; the forecast is the lognormal mean at the last day's averages."""
    x = np.log(rv)

    def row(i: int) -> list[float]:
        return [1.0, x[i], x[i - 4 : i + 1].mean(), x[i - 21 : i + 1].mean()]

    rows = range(21, len(rv) - k)
    A = np.array([row(i) for i in rows])
    b = np.array([np.log(rv[i + 1 : i + k + 1].sum()) for i in rows])
    beta = np.linalg.lstsq(A, b, rcond=None)[0]
    resid = b - A @ beta
    return float(np.exp(np.array(row(len(rv) - 1)) @ beta + resid.var() / 2))


def test_each_step_is_its_own_direct_regression_on_calendar_days() -> None:
    rng = np.random.default_rng(3)
    values = np.exp(rng.normal(-8.0, 0.5, size=80))
    rv = pd.Series(values, index=pd.date_range("2021-01-01", periods=80, freq="1D", tz="UTC"))
    origin = rv.index[-1] + pd.Timedelta(days=1)
    got = har_cumulative_variance(rv, origin, 3, min_days=60)
    assert got is not None
    for k in (1, 2, 3):
        assert got[k - 1] == pytest.approx(by_hand(values, k), rel=1e-9)


def test_a_missing_day_is_a_gap_not_a_shorter_week() -> None:
    rv = regime_rv(calm_days=500, stressed_days=0, seed=4)
    origin = rv.index[-1] + pd.Timedelta(days=1)
    full = har_cumulative_variance(rv, origin, 5)
    holed = rv.drop(rv.index[200])  # a day of incomplete hourly data
    shifted = har_cumulative_variance(holed, origin, 5)
    assert full is not None and shifted is not None
    # the rows whose averages or targets span the hole leave the fit; the rest are unchanged
    assert np.all(np.isfinite(shifted)) and not np.allclose(shifted, full, rtol=1e-12)
    assert shifted == pytest.approx(full, rel=0.05)
    # hourly data that stopped days before the origin give no forecast (a stale state)
    assert har_cumulative_variance(rv, origin + pd.Timedelta(days=3), 5) is None
    recent_hole = rv.drop(rv.index[-10])
    assert har_cumulative_variance(recent_hole, origin, 5) is None  # inside the 22-day average


def test_other_time_zones_are_floored_to_utc_days() -> None:
    prices = hourly_prices(np.full(24 * 3, 0.001))
    in_new_york = prices.tz_convert("America/New_York")
    pd.testing.assert_series_equal(
        daily_realized_variance(in_new_york), daily_realized_variance(prices)
    )
