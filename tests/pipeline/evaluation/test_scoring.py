"""Proper scores and calibration / comparison tests, checked against independent references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.evaluation.metrics import forecast_metrics
from pipeline.evaluation.scoring import (
    christoffersen_independence,
    diebold_mariano,
    interval_quantiles,
    kupiec_pof,
    pinball_key,
    pinball_loss,
    weighted_interval_score,
)

sr = pytest.importorskip("scoringrules")  # a dev dependency: installed by make test


def _bands(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    median = 100 + rng.normal(0, 5, n)
    half80 = rng.uniform(2, 6, n)
    half95 = half80 * 1.6
    actual = median + rng.standard_t(4, n) * 4
    return actual, median, median - half80, median + half80, median - half95, median + half95


def test_wis_equals_the_quantile_crps_of_scoringrules() -> None:
    rng = np.random.default_rng(3)
    y, m, lo80, hi80, lo95, hi95 = _bands(rng, 200)
    ours = weighted_interval_score(y, m, {80: (lo80, hi80), 95: (lo95, hi95)})
    quantiles = np.stack([lo95, lo80, m, hi80, hi95], axis=-1)
    alphas = np.array([0.025, 0.1, 0.5, 0.9, 0.975])
    reference = sr.crps_quantile(y, quantiles, alphas, backend="numpy")
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


def test_wis_is_twice_the_mean_pinball_loss_of_its_quantiles() -> None:
    rng = np.random.default_rng(4)
    y, m, lo80, hi80, lo95, hi95 = _bands(rng, 50)
    wis = weighted_interval_score(y, m, {80: (lo80, hi80), 95: (lo95, hi95)})
    pinball = [
        pinball_loss(y, q, tau)
        for q, tau in ((lo95, 0.025), (lo80, 0.1), (m, 0.5), (hi80, 0.9), (hi95, 0.975))
    ]
    np.testing.assert_allclose(wis, 2 * np.mean(pinball, axis=0), rtol=1e-12)


def test_forecast_metrics_wis_is_the_mean_quantile_crps_of_scoringrules() -> None:
    rng = np.random.default_rng(5)
    y, m, lo80, hi80, lo95, hi95 = _bands(rng, 30)
    frame = pd.DataFrame(
        {"mean": m, "lower_80": lo80, "upper_80": hi80, "lower_95": lo95, "upper_95": hi95}
    )
    metrics = forecast_metrics(y, frame, pd.Series([100.0, 101.0, 99.0]))
    quantiles = np.stack([lo95, lo80, m, hi80, hi95], axis=-1)
    alphas = np.array([0.025, 0.1, 0.5, 0.9, 0.975])
    reference = sr.crps_quantile(y, quantiles, alphas, backend="numpy")
    assert metrics["wis"] == pytest.approx(float(np.mean(reference)), rel=1e-12)


def test_the_quantiles_of_a_forecast_frame_and_their_keys() -> None:
    assert interval_quantiles((80, 95)) == [
        (0.025, "lower_95", "pinball_2.5"),
        (0.1, "lower_80", "pinball_10"),
        (0.5, "mean", "pinball_50"),
        (0.9, "upper_80", "pinball_90"),
        (0.975, "upper_95", "pinball_97.5"),
    ]
    assert pinball_key(0.05) == "pinball_5" and pinball_key(0.995) == "pinball_99.5"


def test_wis_of_a_hand_computed_point() -> None:
    # y=7 below both intervals: |y-m|=3.5; IS80 = 3 + 2/0.2*2 = 23; IS95 = 5 + 2/0.05*1 = 45
    wis = weighted_interval_score(
        np.array([7.0]), np.array([10.5]), {80: ([9.0], [12.0]), 95: ([8.0], [13.0])}
    )
    assert wis[0] == pytest.approx((0.5 * 3.5 + 0.1 * 23 + 0.025 * 45) / 2.5)


def test_pinball_loss_penalises_each_side_by_its_level() -> None:
    assert pinball_loss(np.array([10.0]), np.array([12.0]), 0.9)[0] == pytest.approx(0.2)
    assert pinball_loss(np.array([10.0]), np.array([8.0]), 0.9)[0] == pytest.approx(1.8)
    with pytest.raises(ValueError, match="tau must be inside"):
        pinball_loss(np.array([1.0]), np.array([1.0]), 1.0)


def test_wis_refuses_no_interval_and_bad_levels() -> None:
    with pytest.raises(ValueError, match="at least one"):
        weighted_interval_score(np.array([1.0]), np.array([1.0]), {})
    with pytest.raises(ValueError, match="inside"):
        weighted_interval_score(np.array([1.0]), np.array([1.0]), {100: ([0.0], [2.0])})


def test_kupiec_accepts_nominal_coverage_and_rejects_far_off() -> None:
    exact = np.r_[np.ones(95, bool), np.zeros(5, bool)]
    assert kupiec_pof(exact, 95) == pytest.approx(1.0)
    poor = np.r_[np.ones(80, bool), np.zeros(20, bool)]
    # LR by hand: -2 [80 ln .95 + 20 ln .05 - 80 ln .8 - 20 ln .2]
    lr = -2 * (80 * math.log(0.95) + 20 * math.log(0.05) - 80 * math.log(0.8) - 20 * math.log(0.2))
    assert kupiec_pof(poor, 95) == pytest.approx(stats.chi2.sf(lr, 1))
    assert kupiec_pof(poor, 95) < 1e-6
    assert kupiec_pof(np.ones(100, bool), 95) < 0.05  # never missing is miscalibrated too
    assert math.isnan(kupiec_pof(np.array([], bool), 95))


def test_christoffersen_sees_clustered_misses() -> None:
    clustered = np.ones(200, bool)
    clustered[50:60] = False  # ten misses in a row
    assert christoffersen_independence(clustered) < 1e-4
    spread = np.ones(200, bool)
    spread[::20] = False  # ten isolated misses
    assert christoffersen_independence(spread) > 0.3
    assert math.isnan(christoffersen_independence(np.ones(10, bool)))


def test_diebold_mariano_at_horizon_one_is_the_paired_t_test() -> None:
    rng = np.random.default_rng(5)
    a = rng.gamma(2.0, 1.0, 300)
    b = a + rng.normal(0.1, 0.5, 300)
    dm = diebold_mariano(a, b, horizon=1)
    t = stats.ttest_1samp(a - b, 0.0)
    assert dm.statistic == pytest.approx(t.statistic, rel=1e-10)
    assert dm.p_value == pytest.approx(t.pvalue, rel=1e-8)
    assert dm.mean_difference < 0 and dm.p_better < 0.01 and dm.n == 300


def test_diebold_mariano_hac_widens_with_autocorrelated_differences() -> None:
    rng = np.random.default_rng(6)
    shocks = rng.normal(0.05, 1.0, 400)
    d = np.convolve(shocks, np.ones(10) / 10, mode="valid")  # strongly autocorrelated
    one = diebold_mariano(d, np.zeros_like(d), horizon=1)
    ten = diebold_mariano(d, np.zeros_like(d), horizon=10)
    assert abs(ten.statistic) < abs(one.statistic)
    assert ten.p_value > one.p_value


def test_diebold_mariano_identical_losses_show_no_difference() -> None:
    a = np.linspace(1, 2, 30)
    dm = diebold_mariano(a, a.copy(), horizon=3)
    assert (dm.statistic, dm.p_value) == (0.0, 1.0)
    with pytest.raises(ValueError, match="horizon"):
        diebold_mariano(a, a, horizon=0)
