"""Synthetic prices for tests: deterministic, positive, on a regular UTC grid; as series, as
frames in the raw-file layout, and written as raw files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from pipeline.series import SeriesId


def random_walk_prices(
    n: int = 400, freq: str = "1D", seed: int = 0, start: str = "2021-01-01"
) -> pd.Series:
    """A positive price series with heavy-ish tails, indexed by a regular UTC grid."""
    rng = np.random.default_rng(seed)
    returns = 0.0005 + 0.03 * rng.standard_t(df=5, size=n) / np.sqrt(5 / 3)
    prices = 20000.0 * np.exp(np.cumsum(returns))
    index = pd.date_range(start, periods=n, freq=freq, tz="UTC", name="ds")
    return pd.Series(prices, index=index, name="y")


def garch_t_prices(n: int, seed: int) -> pd.Series:
    """Daily prices whose log returns are GARCH(1,1) with Student-t(4) shocks (heavy tails,
    volatility clustering): alpha 0.10, beta 0.88, unconditional sd 3%."""
    rng = np.random.default_rng(seed)
    nu = 4.0
    z = rng.standard_t(nu, n) * math.sqrt((nu - 2) / nu)
    var = 9e-4
    omega, alpha, beta = var * 0.02, 0.10, 0.88
    r = np.empty(n)
    s2 = var
    for t in range(n):
        r[t] = math.sqrt(s2) * z[t]
        s2 = omega + alpha * r[t] ** 2 + beta * s2
    index = pd.date_range("2000-01-01", periods=n + 1, freq="1D", tz="UTC", name="ds")
    return pd.Series(100.0 * np.exp(np.r_[0.0, np.cumsum(r)]), index=index, name="y")


def price_series(
    values: Sequence[float] | np.ndarray,
    freq: str = "1D",
    start: str = "2020-01-01",
    *,
    log: bool = False,
) -> pd.Series:
    """``values`` (prices, or log prices with ``log=True``) on a regular UTC grid."""
    data = np.asarray(values, dtype=float)
    index = pd.date_range(start, periods=data.size, freq=freq, tz="UTC")
    return pd.Series(np.exp(data) if log else data, index=index)


def ar1_return_prices(
    phi: float, n: int = 400, seed: int = 0, sigma: float = 0.02, start: str = "2020-01-01"
) -> pd.Series:
    """Daily prices from 100 whose log follows ARIMA(1,1,0): log returns are AR(1) with
    coefficient ``phi`` and normal shocks of sd ``sigma`` (``phi=0``: a random walk)."""
    rng = np.random.default_rng(seed)
    returns = lfilter([1.0], [1.0, -phi], sigma * rng.standard_normal(n))
    return price_series(100.0 * np.exp(np.cumsum(returns)), start=start)


def raw_price_frame(
    ds: Sequence[object] | pd.DatetimeIndex,
    price: Sequence[float] | np.ndarray,
    market_cap: Sequence[float] | np.ndarray | None = None,
    volume: Sequence[float] | np.ndarray | None = None,
) -> pd.DataFrame:
    """A frame in the raw-file layout (``ds, price, market_cap, volume``, UTC ``ds``); the
    columns not given are NaN."""
    n = len(price)
    return pd.DataFrame(
        {
            "ds": pd.to_datetime(pd.Series(ds), utc=True),
            "price": np.asarray(price, dtype=float),
            "market_cap": np.asarray(market_cap if market_cap is not None else [np.nan] * n),
            "volume": np.asarray(volume if volume is not None else [np.nan] * n, dtype=float),
        }
    )


def daily_raw_frame(n: int, drop: tuple[int, ...] = (), start: str = "2024-01-01") -> pd.DataFrame:
    """``n`` daily raw rows priced 1..n (market cap 1000*price, volume 10*price), minus the
    positions in ``drop``."""
    ds = pd.date_range(start, periods=n, freq="1D", tz="UTC")
    keep = [i for i in range(n) if i not in drop]
    price = np.arange(1.0, n + 1)
    return raw_price_frame(ds[keep], price[keep], price[keep] * 1000, price[keep] * 10)


def hourly_raw_frame(n: int, start: str = "2024-01-01") -> pd.DataFrame:
    """``n`` hourly raw rows: price k at hour k-1, market cap 100*price, volume 1."""
    ds = pd.date_range(start, periods=n, freq="1h", tz="UTC")
    price = np.arange(1.0, n + 1)
    return raw_price_frame(ds, price, market_cap=price * 100, volume=np.ones(n))


def write_raw_file(data_dir: Path, series: SeriesId, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as the raw file processing reads for ``series`` (4h: the hourly file)."""
    from pipeline.process.stage import DS_FORMAT, raw_source_path

    path = raw_source_path(data_dir, series)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame.copy()
    out["ds"] = out["ds"].dt.strftime(DS_FORMAT)
    out.to_csv(path, index=False)
    return path
