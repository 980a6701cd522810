"""Conformal calibration: the score/quantile maths, nominal coverage on a simulated GARCH-t
series where naive intervals miss, and the wrapper's wiring (calibration recorded, save/load)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.errors import UsageError
from pipeline.forecasters import DEFAULT_LEVELS, make_forecaster
from pipeline.forecasters.composite import RollingForecasts, calibration_origins
from pipeline.forecasters.conformal import Conformal
from pipeline.forecasters.conformal_scores import (
    adaptive_factors,
    conformal_quantile,
    normalised_scores,
    split_factors,
)
from tests.helpers.prices import garch_t_prices, random_walk_prices

W = 500  # training window of every simulated test origin
N_CAL = 100  # calibration origins per fit (the default)
FIRST = 0.25  # the default min_train_fraction


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    scores = np.arange(1.0, 20.0)  # 19 scores
    assert conformal_quantile(scores, 0.9) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert conformal_quantile(scores, 0.5) == 10.0
    assert conformal_quantile(scores, 0.99) == 19.0  # rank 20 > n: the largest
    assert conformal_quantile(np.r_[scores, np.nan], 0.9) == 18.0  # failed origins ignored


def test_scores_are_below_one_exactly_when_covered() -> None:
    mean = np.zeros((1, 4))
    rf = RollingForecasts(
        origins=[pd.Timestamp("2021-01-01", tz="UTC")],
        actual=np.array([[0.05, -0.05, 0.2, -0.3]]),
        mean=mean,
        lower={80: np.full((1, 4), -0.1)},
        upper={80: np.full((1, 4), 0.2)},
    )
    s = normalised_scores(rf, 80)
    np.testing.assert_allclose(s, [[0.25, 0.5, 1.0, 3.0]])


def _emulated_coverage(
    log_y: np.ndarray, level: int, tests: np.ndarray, method: str, n_cal: int = N_CAL
) -> tuple[float, float, list[float]]:
    """Coverage of naive and of conformal naive (horizon 1) over the test origins.

    Emulates ``Conformal(base="naive", horizon=1)`` fitted on ``log_y[t - W:t]`` at each test
    origin ``t`` with numpy (the real class is too slow to refit thousands of times in a test):
    the naive sd of a window is the ddof=1 sd of its log returns (cumulative sums), the
    calibration origins come from the class's own ``calibration_origins`` and the factor from
    its own ``split_factors`` / ``adaptive_factors``.
    """
    r = np.diff(log_y)
    c1 = np.r_[0.0, np.cumsum(r)]
    c2 = np.r_[0.0, np.cumsum(r * r)]

    def sd(a: int, b: int) -> np.ndarray:  # returns r[a:b], ddof=1, vectorised over a/b
        m = b - a
        s, s2 = c1[b] - c1[a], c2[b] - c2[a]
        return np.sqrt((s2 - s * s / m) / (m - 1))

    z = stats.norm.ppf(0.5 + level / 200)
    cal = np.array(calibration_origins(W, math.ceil(W * FIRST), 1, n_cal))
    raw, calibrated, factors = [], [], []
    for t in tests:
        start = t - W  # training window log_y[start:t]
        o = start + cal  # calibration fits use log_y[start:o], forecast log_y[o]
        cal_sd = sd(start, o - 1)
        scores = np.abs(log_y[o] - log_y[o - 1]) / (z * cal_sd)
        if method == "split":
            f, _ = split_factors(scores[:, None], level, 5)
        else:
            f, _ = adaptive_factors(scores[:, None], level, 5, 0.01, 10)
        err = abs(log_y[t] - log_y[t - 1]) / (z * sd(start, t - 1))
        raw.append(err <= 1)
        calibrated.append(err <= f[0])
        factors.append(float(f[0]))
    return float(np.mean(raw)), float(np.mean(calibrated)), factors


@pytest.mark.parametrize(
    ("method", "n_cal", "n_tests", "tol"),
    # Tolerance: > 3 binomial standard errors (sqrt(L(1-L)/n): 0.73 pp at 80%, 0.40 pp at 95%
    # for 3,000 points; 1.0 / 0.56 pp for 1,500) plus the volatility clustering, which makes
    # misses come in runs (fewer effective points): +-3 pp and +-3.5 pp. ACI runs with 40
    # calibration origins here (its sequential updates make 100 slow in a test).
    [("split", N_CAL, 3000, 0.03), ("adaptive", 40, 1500, 0.035)],
)
def test_calibration_reaches_nominal_coverage_where_naive_misses(
    method: str, n_cal: int, n_tests: int, tol: float
) -> None:
    y = garch_t_prices(W + 3000, seed=7)
    log_y = np.log(y.to_numpy())
    tests = np.arange(len(log_y) - n_tests, len(log_y))
    raw80, cov80, _ = _emulated_coverage(log_y, 80, tests, method, n_cal)
    raw95, cov95, _ = _emulated_coverage(log_y, 95, tests, method, n_cal)
    # Normal intervals on t(4)-GARCH returns are too wide at 80% (heavy tails, thin shoulders):
    # the uncalibrated coverage is outside the band the calibrated one must be in.
    assert raw80 - 0.80 > tol
    assert abs(cov80 - 0.80) <= tol
    assert abs(cov95 - 0.95) <= tol


@pytest.mark.slow
def test_wrapper_matches_the_emulation_and_records_its_calibration(tmp_path: Path) -> None:
    """The real class computes what the coverage test emulates (so that test is about it)."""
    y = garch_t_prices(W + 200, seed=7)
    log_y = np.log(y.to_numpy())
    t = len(log_y) - 50
    model = Conformal(base="naive", horizon=1).fit(y.iloc[t - W : t])
    cal = model.get_params()["calibration"]
    assert cal["n_origins"] == N_CAL and cal["horizon"] == 1 and cal["method"] == "split"
    for level in DEFAULT_LEVELS:
        _, _, factors = _emulated_coverage(log_y, level, np.array([t]), "split")
        assert cal["factors"][str(level)][0] == pytest.approx(factors[0], rel=1e-9)
    # The calibrated interval is the naive one with its log half-widths scaled by the factor.
    base = make_forecaster("naive").fit(y.iloc[t - W : t]).predict(1)
    fc = model.predict(1)
    m = np.log(base["mean"].iloc[0])
    for level in DEFAULT_LEVELS:
        f = cal["factors"][str(level)][0]
        hw = np.log(base[f"upper_{level}"].iloc[0]) - m
        assert np.log(fc[f"upper_{level}"].iloc[0]) == pytest.approx(m + f * hw, rel=1e-12)
        assert np.log(fc[f"lower_{level}"].iloc[0]) == pytest.approx(m - f * hw, rel=1e-12)
    # Uncalibrated levels are derived from the nearest calibrated level's scores.
    fc3 = model.predict(1, levels=(50, 99))
    assert fc3["lower_99"].iloc[0] < fc["lower_95"].iloc[0] < fc3["lower_50"].iloc[0]


@pytest.mark.slow
def test_adaptive_variant_reports_its_effective_levels() -> None:
    y = random_walk_prices(n=300, seed=1)
    model = make_forecaster("aci_naive", horizon=5).fit(y)
    cal = model.get_params()["calibration"]
    assert cal["method"] == "adaptive"
    for level in ("80", "95"):
        assert len(cal["factors"][level]) == 5
        assert all(0.0 <= u <= 1.0 for u in cal["effective_level"][level])
        assert len(cal["scores"][level]) == cal["n_origins"]
    # Beyond the calibrated horizon the last step's factor is reused.
    assert np.all(np.isfinite(model.predict(8).drop(columns="ds").to_numpy()))


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="method must be"):
        Conformal(method="bogus")
    with pytest.raises(UsageError, match="calibration_origins must be >= 10"):
        Conformal(calibration_origins=3)
    with pytest.raises(UsageError, match="cannot itself be conformal"):
        Conformal(base="conformal_naive")
