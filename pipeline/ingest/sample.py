"""A deterministic, seeded SIMULATED price path for working offline.

Log returns follow a GARCH(1,1)-like recursion with Student-t (df=4) shocks, so the path has
crypto's heavy tails and volatility clustering. The same (seed, coin, vs, freq, end, length)
always gives the same path. It is simulated data: never mix it with real prices.
"""

from __future__ import annotations

import zlib
from datetime import datetime

import numpy as np
import pandas as pd

from pipeline.series import SeriesId, freq_offset

#: rough starting prices so that simulated series look like their coins
_START_PRICE = {"bitcoin": 30000.0, "ethereum": 2000.0}
_DAILY_VOL = 0.035  # long-run daily volatility of log returns
_T_DF = 4.0
_ALPHA, _BETA = 0.08, 0.90


def simulate(
    series: SeriesId, periods: int, end: datetime | pd.Timestamp, seed: int
) -> pd.DataFrame:
    """``periods`` rows at ``series.freq`` ending at ``end`` (floored to the frequency).

    Returns ``ds,price,market_cap,volume`` (market_cap empty, volume simulated).
    """
    if periods < 1:
        raise ValueError("periods must be at least 1")
    step = freq_offset(series.freq)
    stop = pd.Timestamp(end)
    stop = (stop.tz_localize("UTC") if stop.tzinfo is None else stop.tz_convert("UTC")).floor(step)
    # a seed per series (crc32 is stable across processes, unlike hash())
    mixed = zlib.crc32(f"{series.coin}/{series.vs}/{series.freq}".encode())
    rng = np.random.default_rng([seed, mixed])

    steps_per_day = pd.Timedelta("1D") / step
    long_run_var = _DAILY_VOL**2 / steps_per_day
    omega = long_run_var * (1.0 - _ALPHA - _BETA)
    shocks = rng.standard_t(_T_DF, size=periods) / np.sqrt(_T_DF / (_T_DF - 2.0))
    returns = np.empty(periods)
    var = long_run_var
    prev = 0.0
    for i in range(periods):
        var = omega + _ALPHA * prev**2 + _BETA * var
        prev = np.sqrt(var) * shocks[i]
        returns[i] = prev
    returns[0] = 0.0
    start_price = _START_PRICE.get(series.coin, 100.0)
    price = start_price * np.exp(np.cumsum(returns))
    base_volume = start_price * 2e4 / steps_per_day
    volume = base_volume * np.exp(
        8.0 * np.abs(returns) / np.sqrt(long_run_var) * 0.05 + rng.normal(0, 0.3, periods)
    )
    ds = pd.date_range(end=stop, periods=periods, freq=step, name="ds")
    return pd.DataFrame(
        {"ds": ds, "price": price, "market_cap": np.nan, "volume": volume}
    ).reset_index(drop=True)
