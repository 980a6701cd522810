"""Features of a regular price series: log price and returns, volatility, moving averages, RSI.

Features are computed separately on each unbroken run of prices, so nothing is carried across a
long gap (rows inside a gap have a NaN price and NaN features). Windows need all their points:
each feature is NaN for the first ``window - 1`` rows of a run. The row count never changes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.series import freq_offset

#: (short, long) windows in steps, per frequency: about a day and a week for intraday series,
#: a week and a month for daily ones. Used for volatility, SMA and EMA.
FEATURE_WINDOWS: dict[str, tuple[int, int]] = {"1h": (24, 168), "4h": (6, 42), "1d": (7, 30)}
RSI_PERIOD = 14


def feature_columns(freq: str) -> list[str]:
    """The columns :func:`add_features` adds for ``freq``, in order."""
    short, long = windows_for(freq)
    return [
        "log_price",
        "log_return",
        f"volatility_{short}",
        f"volatility_{long}",
        f"sma_{short}",
        f"sma_{long}",
        f"ema_{short}",
        f"ema_{long}",
        f"rsi_{RSI_PERIOD}",
        "hour",
        "dayofweek",
    ]


def windows_for(freq: str) -> tuple[int, int]:
    freq_offset(freq)  # raises UsageError on an unknown frequency
    return FEATURE_WINDOWS[freq]


def rsi(price: pd.Series, period: int = RSI_PERIOD) -> pd.Series:
    """Wilder's RSI (0..100): 100 when prices only rose, 0 when they only fell, 50 when flat."""
    change = price.diff()
    gain = change.clip(lower=0.0)
    loss = -change.clip(upper=0.0)
    avg_gain = gain.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean().to_numpy()
    avg_loss = loss.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    value = np.where(avg_loss == 0.0, np.where(avg_gain == 0.0, 50.0, 100.0), value)
    value = np.where(np.isnan(avg_gain) | np.isnan(avg_loss), np.nan, value)
    return pd.Series(value, index=price.index)


def _run_features(price: pd.Series, short: int, long: int) -> pd.DataFrame:
    """Price features of one unbroken run of finite, positive prices."""
    log_price = np.log(price)
    log_return = log_price.diff()
    out = {"log_price": log_price, "log_return": log_return}
    for w in (short, long):
        out[f"volatility_{w}"] = log_return.rolling(w, min_periods=w).std()
    for w in (short, long):
        out[f"sma_{w}"] = price.rolling(w, min_periods=w).mean()
    for w in (short, long):
        out[f"ema_{w}"] = price.ewm(span=w, adjust=False, min_periods=w).mean()
    out[f"rsi_{RSI_PERIOD}"] = rsi(price)
    return pd.DataFrame(out, index=price.index)


def add_features(frame: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Return a copy of ``frame`` (columns ``ds``, ``price``, ...) with the feature columns added.

    Pure: the input is not modified and the output has the same rows in the same order.
    """
    short, long = windows_for(freq)
    out = frame.copy()
    price = out["price"].astype(float)
    price_features = [c for c in feature_columns(freq) if c not in ("hour", "dayofweek")]
    for column in price_features:
        out[column] = np.nan
    valid = price.notna().to_numpy()
    # A new run starts at every valid row whose predecessor is missing (or at the first row).
    starts = valid & ~np.concatenate(([False], valid[:-1]))
    run_id = np.cumsum(starts)
    for run in np.unique(run_id[valid]):
        rows = np.flatnonzero(valid & (run_id == run))
        features = _run_features(price.iloc[rows].reset_index(drop=True), short, long)
        for column in price_features:
            out.iloc[rows, out.columns.get_loc(column)] = features[column].to_numpy()
    ds = pd.to_datetime(out["ds"], utc=True)
    out["hour"] = ds.dt.hour.astype("int64")
    out["dayofweek"] = ds.dt.day_of_week.astype("int64")
    return out
