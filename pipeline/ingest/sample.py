"""A deterministic, seeded SIMULATED price path for working offline.

Every timeframe of a coin is read from one simulated hourly market, so the daily and the hourly
sample show the same prices at the same moments. Hourly log returns follow a GARCH(1,1)-like
recursion with Student-t (df=4) shocks, which gives the path crypto's heavy tails and volatility
clustering, also once summed to daily returns.

The hourly path is drawn backwards from the next 00:00 UTC, where it sits at the coin's rough
price; counted back from there, its prices depend only on the seed and the coin pair. So a
longer history only extends it into the past, and a later hour of the same UTC day only reveals
one more point (on another day the same path ends one day later). A coarser sample
takes the hourly price at each of its timestamps, as a snapshot at the start of the period (the
way CoinGecko's daily points are stored), and the volume of the period that ends there.

It is simulated data: never mix it with real prices.
"""

from __future__ import annotations

import math
import zlib
from datetime import datetime

import numpy as np
import pandas as pd

from pipeline.series import SeriesId, freq_offset

#: rough prices so that simulated series look like their coins
_START_PRICE = {"bitcoin": 30000.0, "ethereum": 2000.0}
_HOUR = pd.Timedelta("1h")
_DAILY_VOL = 0.035  # long-run daily volatility of log returns
_HOURLY_VAR = _DAILY_VOL**2 / 24
_T_DF = 4.0
_ALPHA, _BETA = 0.03, 0.965  # per hour: shocks fade with a half-life of about six days


def simulate(
    series: SeriesId, periods: int, end: datetime | pd.Timestamp, seed: int
) -> pd.DataFrame:
    """``periods`` rows at ``series.freq`` ending at ``end`` (floored to the frequency).

    Returns ``ds,price,market_cap,volume`` (market_cap empty, volume simulated). The prices of
    every frequency come from the same hourly path (see the module docstring).
    """
    if periods < 1:
        raise ValueError("periods must be at least 1")
    step = freq_offset(series.freq)  # 1h, 4h or 1d: whole hours
    now = pd.Timestamp(end)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    ds = pd.date_range(end=now.floor(step), periods=periods, freq=step, name="ds")
    per_row = step // _HOUR
    anchor = now.floor("1D") + pd.Timedelta("1D")
    oldest = ds[0] - (per_row - 1) * _HOUR  # the first hour of the first row's volume
    price, volume = _hourly_path(series, (anchor - oldest) // _HOUR + 1, seed)
    at = ((ds - oldest) // _HOUR).to_numpy()  # positions of the rows' timestamps in the hourly path
    summed = np.concatenate(([0.0], np.cumsum(volume)))
    return pd.DataFrame(
        {
            "ds": ds,
            "price": price[at],
            "market_cap": np.nan,
            "volume": summed[at + 1] - summed[at + 1 - per_row],
        }
    )


def _hourly_path(series: SeriesId, hours: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Prices and volumes of the last ``hours`` hours up to the anchor, oldest first.

    Draws go backwards from the anchor, so the path of a shorter request is the end of the
    path of a longer one (numpy's generators draw element by element).
    """
    # one stream per coin pair, shared by its frequencies (crc32 is stable across processes)
    mixed = zlib.crc32(f"{series.coin}/{series.vs}".encode())
    shocks = np.random.default_rng([seed, mixed, 0]).standard_t(_T_DF, size=hours)
    noise = np.random.default_rng([seed, mixed, 1]).normal(0.0, 0.3, hours)
    back = _garch_returns(shocks / math.sqrt(_T_DF / (_T_DF - 2.0)))
    start_price = _START_PRICE.get(series.coin, 100.0)
    # back[k] is the log return into the hour k steps before the anchor
    price = start_price * np.exp(-np.cumsum(np.concatenate(([0.0], back[:-1]))))
    base_volume = start_price * 2e4 / 24
    volume = base_volume * np.exp(0.4 * np.abs(back) / math.sqrt(_HOURLY_VAR) + noise)
    return price[::-1], volume[::-1]


def _garch_returns(shocks: np.ndarray) -> np.ndarray:
    """Log returns ``sqrt(var_t) * z_t`` with ``var_t = w + a * r_{t-1}**2 + b * var_{t-1}``."""
    omega = _HOURLY_VAR * (1.0 - _ALPHA - _BETA)
    out = [0.0] * len(shocks)
    var, prev = _HOURLY_VAR, 0.0
    for i, z in enumerate(shocks.tolist()):  # plain floats: ~0.25 us a step
        var = omega + _ALPHA * prev * prev + _BETA * var
        prev = math.sqrt(var) * z
        out[i] = prev
    return np.asarray(out)
