"""Daily volatility from intraday prices: realized variance and the HAR-RV variance forecast.

*Realized variance* of a day is the sum of the squared log returns of its intraday prices (24
hourly returns); on a 24/7 market it measures that day's close-to-close variance far more
precisely than the squared daily return does. The HAR-RV model (Corsi 2009, "A Simple
Approximate Long-Memory Model of Realized Volatility") forecasts it from the average log
realized variance over the last day, week (5 days) and month (22 days): Corsi's trading-day lags,
kept as calendar days of a 24/7 market rather than tuned. Here each horizon
step ``k`` has its own direct regression: the log of the realized variance summed over the
next ``k`` days on those three averages, fitted by least squares on the window, so the
forecast is the cumulative log-price variance of every step with no recursion (the lognormal
mean ``exp(mu + s^2 / 2)`` of each regression's fitted value and residual variance).

A daily band built from it (:func:`har_band`: the last price as the median, Gaussian in log
price) scored WIS 0.977x naive on the replay of BTC daily 2018-2021 where the band average
served 0.986x (``bench/har_rv_study.py``, ``docs/results/har-rv.md``). It is not a registered
forecaster yet: a forecaster is fitted on one price series, and this model needs the hourly
series of the daily series' coin beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

from pipeline.errors import UsageError

#: The HAR components: average log realized variance over the last 1, 5 and 22 days.
HAR_LAGS = (1, 5, 22)
#: Complete days of realized variance a forecast needs (about a year).
HAR_MIN_DAYS = 365
#: Days of realized variance each forecast is fitted on at most (the backtest window's 1,000).
HAR_WINDOW = 1000


def daily_realized_variance(prices: pd.Series, *, per_day: int = 24) -> pd.Series:
    """Realized variance of each UTC day of the intraday ``prices`` (a regular ``per_day``-per-day
    grid, e.g. hourly): the sum of the day's squared log returns. A day with a missing price
    or return is left out, as are non-positive prices (a clear error)."""
    if not isinstance(prices.index, pd.DatetimeIndex):
        raise UsageError("realized variance needs a DatetimeIndex of intraday prices")
    values = prices.astype(float)
    if bool((values <= 0).any()):
        raise UsageError("realized variance needs positive prices")
    tz = prices.index.tz
    index = prices.index.tz_localize("UTC") if tz is None else prices.index.tz_convert("UTC")
    returns = pd.Series(np.log(values.to_numpy()), index=index).diff()
    day = returns.index.floor("1D")
    grouped = (returns**2).groupby(day)
    complete = grouped.count() == per_day  # NaN returns (gaps, the first one) are not counted
    rv = grouped.sum()[complete]
    rv.name = "realized_variance"
    return rv


def har_cumulative_variance(
    rv: pd.Series,
    origin: pd.Timestamp,
    horizon: int,
    *,
    min_days: int = HAR_MIN_DAYS,
    window: int = HAR_WINDOW,
) -> np.ndarray | None:
    """The forecast log-price variance summed over steps 1..``horizon`` from ``origin`` (the
    first forecast day, midnight UTC), fitted on the ``window`` calendar days of ``rv`` before it.

    Days missing from ``rv`` (incomplete intraday data) stay gaps: an average or a target that
    spans one is left out of the fit, so "the next k days" are always calendar days. ``None``
    when fewer than ``min_days`` days are known or when the day before ``origin`` is missing (the
    intraday prices stop earlier: the forecast would start from a stale state).
    """
    if horizon < 1:
        raise UsageError("horizon must be >= 1")
    origin = pd.Timestamp(origin)
    origin = origin.tz_localize("UTC") if origin.tz is None else origin.tz_convert("UTC")
    days = pd.date_range(end=origin.floor("1D") - pd.Timedelta(days=1), periods=window, freq="1D")
    index = rv.index.tz_localize("UTC") if rv.index.tz is None else rv.index.tz_convert("UTC")
    past = pd.Series(rv.to_numpy(dtype=float), index=index).reindex(days)
    known = int(past.notna().sum())
    if known < max(min_days, max(HAR_LAGS) + horizon + 10) or np.isnan(past.iloc[-1]):
        return None
    if bool((past <= 0).any()):
        raise UsageError("realized variance must be positive")
    log_rv = pd.Series(np.log(past.to_numpy()))
    X = np.column_stack(
        [np.ones(len(log_rv))] + [log_rv.rolling(lag).mean().to_numpy() for lag in HAR_LAGS]
    )
    now = X[-1]
    if not np.isfinite(now).all():  # a gap in the last 22 days
        return None
    levels = past.to_numpy()
    out = np.empty(horizon)
    for k in range(1, horizon + 1):
        # target at day i: log of the realized variance summed over days i+1 .. i+k
        ahead = pd.Series(levels).rolling(k).sum().shift(-k).to_numpy()
        ok = np.isfinite(ahead) & np.isfinite(X).all(axis=1)
        target = np.log(ahead[ok])
        beta, *_ = np.linalg.lstsq(X[ok], target, rcond=None)
        resid = target - X[ok] @ beta
        out[k - 1] = float(np.exp(now @ beta + resid.var() / 2))
    return out


def har_band(
    last_price: float, variance: np.ndarray, levels: Sequence[int] = (80, 95)
) -> dict[str, np.ndarray]:
    """Median ``last_price`` and, per level, a Gaussian band in log price of ``variance``
    (cumulative, per step): the columns the metrics score."""
    sd = np.sqrt(np.asarray(variance, dtype=float))
    log_last = np.log(last_price)
    out = {"mean": np.full(len(sd), float(last_price))}
    for level in levels:
        z = NormalDist().inv_cdf(0.5 + level / 200)
        out[f"lower_{level}"] = np.exp(log_last - z * sd)
        out[f"upper_{level}"] = np.exp(log_last + z * sd)
    return out
