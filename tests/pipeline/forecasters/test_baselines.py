"""Naive and drift baselines: exact formulas on known series."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pipeline.forecasters.baselines import Drift, Naive
from tests.helpers.prices import price_series, random_walk_prices


def test_naive_mean_is_last_price_and_width_grows_like_sqrt_h() -> None:
    y = random_walk_prices(n=200, seed=1)
    fc = Naive().fit(y).predict(16)
    assert np.allclose(fc["mean"], y.iloc[-1], rtol=0, atol=1e-9)
    half_log_width = np.log(fc["upper_95"] / fc["mean"]).to_numpy()
    h = np.arange(1, 17)
    assert np.allclose(half_log_width / np.sqrt(h), half_log_width[0])
    # The spread is that of the training log returns.
    sigma = np.std(np.diff(np.log(y.to_numpy())), ddof=1)
    assert half_log_width[0] == pytest.approx(stats.norm.ppf(0.975) * sigma)


def test_drift_mean_follows_average_log_return_and_adds_drift_variance() -> None:
    rng = np.random.default_rng(7)
    log_returns = 0.01 + 0.02 * rng.standard_normal(100)
    y = price_series(100 * np.exp(np.r_[0.0, np.cumsum(log_returns)]), start="2022-01-01")
    model = Drift().fit(y)
    fc = model.predict(10)
    c = log_returns.mean()
    h = np.arange(1, 11)
    assert np.allclose(fc["mean"], y.iloc[-1] * np.exp(c * h))
    sigma = log_returns.std(ddof=1)
    expected = stats.norm.ppf(0.9) * sigma * np.sqrt(h * (1 + h / 100))
    assert np.allclose(np.log(fc["upper_80"] / fc["mean"]), expected)
    assert model.get_params()["drift_log_return"] == pytest.approx(c)
    assert model.get_params()["n_returns"] == 100


def test_drift_intervals_wider_than_naive() -> None:
    y = random_walk_prices(n=100, seed=2)
    naive = Naive().fit(y).predict(30)
    drift = Drift().fit(y).predict(30)
    naive_w = np.log(naive["upper_95"] / naive["lower_95"])
    drift_w = np.log(drift["upper_95"] / drift["lower_95"])
    assert (drift_w > naive_w).all()
