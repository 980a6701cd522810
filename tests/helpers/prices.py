"""Synthetic price series for tests: deterministic, positive, on a regular UTC grid."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


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
