"""Features on known series: exact values, NaN warm-up, no mixing across long gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import UsageError
from pipeline.process.features import add_features, feature_columns, rsi


def frame_of(prices: list[float] | np.ndarray, freq: str = "1D", start: str = "2024-01-01"):
    ds = pd.date_range(start, periods=len(prices), freq=freq, tz="UTC")
    return pd.DataFrame({"ds": ds, "price": np.asarray(prices, dtype=float)})


def test_log_return_of_a_doubling_series_is_log_2():
    out = add_features(frame_of([2.0**k for k in range(10)]), "1d")
    assert np.isnan(out["log_return"].iloc[0])
    np.testing.assert_allclose(out["log_return"].iloc[1:], np.log(2.0), rtol=1e-12)
    np.testing.assert_allclose(out["log_price"], np.arange(10) * np.log(2.0), atol=1e-12)
    # Constant returns: zero volatility once the window is full.
    assert out["volatility_7"].iloc[:7].isna().all()  # 7 returns need 8 prices
    np.testing.assert_allclose(out["volatility_7"].iloc[7:], 0.0, atol=1e-12)


def test_sma_and_ema_values_on_a_known_series():
    prices = np.arange(1.0, 41.0)  # 1, 2, ..., 40
    out = add_features(frame_of(prices), "1d")
    assert out["sma_7"].iloc[:6].isna().all()
    assert out["sma_7"].iloc[6] == pytest.approx(4.0)  # mean of 1..7
    assert out["sma_7"].iloc[-1] == pytest.approx(37.0)  # mean of 34..40
    assert out["sma_30"].iloc[29] == pytest.approx(15.5)  # mean of 1..30
    # EMA with span 7: alpha = 2/8, recursive from the first price, shown once 7 points exist.
    ema, expected = prices[0], []
    for p in prices:
        ema = 0.25 * p + 0.75 * ema
        expected.append(ema)
    assert out["ema_7"].iloc[:6].isna().all()
    np.testing.assert_allclose(out["ema_7"].iloc[6:], expected[6:], rtol=1e-12)


def test_rsi_extremes_and_warm_up():
    rising = add_features(frame_of(np.arange(1.0, 31.0)), "1d")["rsi_14"]
    assert rising.iloc[:14].isna().all()
    np.testing.assert_allclose(rising.iloc[14:], 100.0)
    falling = rsi(pd.Series(np.arange(30.0, 0.0, -1.0)))
    np.testing.assert_allclose(falling.iloc[14:], 0.0)
    flat = rsi(pd.Series(np.full(30, 5.0)))
    np.testing.assert_allclose(flat.iloc[14:], 50.0)


def test_rsi_matches_wilder_smoothing_on_alternating_moves():
    # +2, -1, +2, -1, ... Wilder's averages (alpha 1/14) settle into a 2-cycle; after a down move
    # avg gain = 26/27 and avg loss = 14/27, so RSI = 100 - 100 / (1 + 26/14) = 65; after an
    # up move avg gain = 28/27 and avg loss = 13/27, so RSI = 100 - 100 / (1 + 28/13) = 1300/41.
    moves = np.tile([2.0, -1.0], 200)
    price = pd.Series(100.0 + np.concatenate(([0.0], np.cumsum(moves))))
    value = rsi(price)
    assert value.iloc[-1] == pytest.approx(65.0, abs=1e-6)
    assert value.iloc[-2] == pytest.approx(100.0 - 1300.0 / 41.0, abs=1e-6)


def test_volatility_is_rolling_std_of_log_returns():
    rng = np.random.default_rng(3)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, 60)))
    out = add_features(frame_of(prices), "1d")
    returns = np.diff(np.log(prices))
    assert out["volatility_30"].iloc[30] == pytest.approx(np.std(returns[:30], ddof=1))
    assert out["volatility_30"].iloc[29] != out["volatility_30"].iloc[29]  # NaN: 29 returns


def test_row_count_preserved_input_untouched_and_calendar_fields():
    frame = frame_of(np.linspace(10, 20, 50), freq="1h", start="2024-01-06 20:00")
    before = frame.copy()
    out = add_features(frame, "1h")
    pd.testing.assert_frame_equal(frame, before)
    assert len(out) == len(frame)
    assert list(out.columns) == ["ds", "price", *feature_columns("1h")]
    assert out["hour"].iloc[:5].tolist() == [20, 21, 22, 23, 0]
    assert out["dayofweek"].iloc[3] == 5 and out["dayofweek"].iloc[4] == 6  # Sat, then Sun


def test_features_restart_after_a_long_gap():
    prices = np.concatenate((np.arange(1.0, 11.0), [np.nan] * 5, np.arange(100.0, 110.0)))
    out = add_features(frame_of(prices), "1d")
    assert len(out) == 25
    assert out.loc[10:14, feature_columns("1d")[:-2]].isna().all().all()
    assert np.isnan(out["log_return"].iloc[15])  # no return across the gap
    assert out["log_return"].iloc[16] == pytest.approx(np.log(101.0 / 100.0))
    assert out["sma_7"].iloc[15:21].isna().all()  # the window starts again after the gap
    assert out["sma_7"].iloc[21] == pytest.approx(103.0)


def test_windows_follow_the_frequency():
    assert "volatility_168" in feature_columns("1h")
    assert "sma_42" in feature_columns("4h")
    assert "ema_30" in feature_columns("1d")
    with pytest.raises(UsageError, match="unknown frequency"):
        add_features(frame_of([1.0, 2.0]), "2h")
