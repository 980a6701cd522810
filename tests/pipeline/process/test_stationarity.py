"""Stationarity report: keys, the differencing order on known processes, KPSS warnings handled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.process.stationarity import choose_d, stationarity_report
from tests.helpers.prices import price_series


def prices(log_values: np.ndarray) -> pd.Series:
    return price_series(log_values, log=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_walk_needs_one_difference(seed):
    rng = np.random.default_rng(seed)
    report = stationarity_report(prices(10 + np.cumsum(rng.normal(0, 0.03, 1000))))
    assert report["d"] == 1
    assert report["log_price"]["stationary"] is False
    assert report["log_return"]["stationary"] is True
    # KPSS on a random walk is beyond its table: the bound is recorded (the warning is caught;
    # pytest turns any escaped warning into an error).
    assert report["log_price"]["kpss_pvalue"] == pytest.approx(0.01)
    assert report["log_price"]["kpss_pvalue_bound"] is True


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_white_noise_needs_no_difference(seed):
    rng = np.random.default_rng(seed)
    report = stationarity_report(prices(10 + rng.normal(0, 0.03, 1000)))
    assert report["d"] == 0
    assert report["log_price"]["stationary"] is True


def test_report_keys_and_point_cap():
    rng = np.random.default_rng(5)
    series = prices(10 + np.cumsum(rng.normal(0, 0.01, 600)))
    report = stationarity_report(series, max_points=250)
    assert {
        "alpha",
        "max_points",
        "n_points",
        "first_ds",
        "last_ds",
        "log_price",
        "log_return",
        "d",
    } <= set(report)
    assert report["n_points"] == 250
    assert report["first_ds"] == series.index[-250].isoformat()
    assert report["log_return"]["n"] == 249
    for part in ("log_price", "log_return"):
        assert {
            "adf_stat",
            "adf_pvalue",
            "adf_lags",
            "kpss_stat",
            "kpss_pvalue",
            "kpss_pvalue_bound",
            "adf_stationary",
            "kpss_stationary",
            "stationary",
        } <= set(report[part])
        assert 0.0 <= report[part]["adf_pvalue"] <= 1.0
        assert 0.01 <= report[part]["kpss_pvalue"] <= 0.1


def test_too_short_or_constant_series_is_skipped_not_failed():
    short = stationarity_report(prices(np.linspace(1, 2, 10)))
    assert short["d"] is None
    assert "too few points" in short["log_price"]["skipped"]
    flat = stationarity_report(prices(np.zeros(100)))
    assert flat["d"] is None
    assert flat["log_price"]["skipped"] == "constant series"


def test_deterministic_series_is_reported_not_a_crash():
    # A straight line in log price: ADF's regression is rank-deficient; the statsmodels warning
    # is caught and noted (pytest would fail on an escaped warning).
    report = stationarity_report(prices(np.linspace(1.0, 2.0, 200)))
    assert "rank-deficient" in report["log_return"]["note"]
    assert report["d"] in (0, 1, 2)


def verdict(adf: bool, kpss: bool) -> dict[str, bool]:
    return {"adf_stationary": adf, "kpss_stationary": kpss}


@pytest.mark.parametrize(
    ("log_price", "log_return", "d"),
    [
        (verdict(True, True), verdict(True, True), 0),
        (verdict(True, False), verdict(True, True), 1),  # tests disagree on the level: difference
        (verdict(False, False), verdict(True, True), 1),
        (verdict(False, False), verdict(True, False), 1),  # KPSS alone rejects on returns
        (verdict(False, False), verdict(False, True), 1),
        (verdict(False, False), verdict(False, False), 2),  # both say returns have a unit root
    ],
)
def test_choose_d_moves_from_one_only_when_both_tests_agree(log_price, log_return, d):
    assert choose_d(log_price, log_return) == d
    assert choose_d({"skipped": "too few points"}, log_return) is None
