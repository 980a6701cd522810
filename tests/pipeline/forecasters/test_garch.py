"""GARCH-family forecasters: closed-form variance forecasts, simulation, Student-t quantiles."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.errors import ForecastError
from pipeline.forecasters import DEFAULT_LEVELS, forecaster_class
from pipeline.forecasters.garch import (
    GarchForecaster,
    GarchParams,
    choose_scale,
    filter_garch,
    simulate_cumulative,
    variance_path,
)
from tests.helpers.prices import garch_t_prices, price_series

PARAMS = GarchParams(
    mu=0.0, omega=0.05, alpha=0.1, gamma=0.0, beta=0.85, nu=8.0, scale=100.0,
    last_resid=-2.0, last_sigma2=1.5,
)  # fmt: skip


@pytest.fixture(scope="module")
def clustered() -> pd.Series:
    return garch_t_prices(1500, seed=11)


@pytest.fixture(scope="module")
def fitted(clustered: pd.Series) -> GarchForecaster:
    return GarchForecaster().fit(clustered)


def test_registry_and_complexity() -> None:
    assert forecaster_class("garch").complexity == 2
    assert forecaster_class("gjr_garch").asymmetric
    assert forecaster_class("drift_garch").drift
    assert forecaster_class("arima_garch").complexity == 3


@pytest.mark.slow
def test_variance_forecast_is_the_garch11_closed_form(
    fitted: GarchForecaster, clustered: pd.Series
) -> None:
    from arch import arch_model

    g = fitted.garch_
    h = 15
    # Closed form with the fitted parameters: s2[1] from the last shock and variance, then
    # s2[k] = omega + (alpha + beta) s2[k-1].
    expected = [g.omega + g.alpha * g.last_resid**2 + g.beta * g.last_sigma2]
    for _ in range(h - 1):
        expected.append(g.omega + (g.alpha + g.beta) * expected[-1])
    got = fitted.variance_forecast(h) * g.scale**2
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # ... and arch's own analytic forecast with the same parameters agrees.
    r = np.diff(np.log(clustered.to_numpy())) * g.scale
    model = arch_model(r, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    arch_var = model.forecast(
        params=np.array([g.omega, g.alpha, g.beta, g.nu]), horizon=h, reindex=False
    ).variance.to_numpy()[-1]
    np.testing.assert_allclose(got, arch_var, rtol=1e-8)
    # The fit finds the clustering it was simulated with (alpha 0.10, beta 0.88).
    assert 0.03 < g.alpha < 0.25 and 0.7 < g.beta < 0.97 and g.persistence < 1


@pytest.mark.slow
def test_step_one_interval_is_the_scaled_student_t_quantile(fitted: GarchForecaster) -> None:
    g = fitted.garch_
    fc = fitted.predict(1)
    sd1 = math.sqrt(variance_path(g, 1)[0]) / g.scale
    for level in DEFAULT_LEVELS:
        q = stats.t.ppf(0.5 + level / 200, g.nu) * math.sqrt((g.nu - 2) / g.nu)
        last = math.log(fitted.last_price_)
        assert math.log(fc[f"upper_{level}"].iloc[0]) == pytest.approx(last + q * sd1, rel=1e-12)
        assert math.log(fc[f"lower_{level}"].iloc[0]) == pytest.approx(last - q * sd1, rel=1e-12)


@pytest.mark.slow
def test_fixed_parameters_reproduce_archs_filter(
    fitted: GarchForecaster, clustered: pd.Series
) -> None:
    fixed = fitted.calibration_params()["fixed_params"]
    g = filter_garch(np.diff(np.log(clustered.to_numpy())), fixed)
    assert g.last_sigma2 == pytest.approx(fitted.garch_.last_sigma2, rel=1e-9)
    assert g.last_resid == pytest.approx(fitted.garch_.last_resid, rel=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.12])
def test_simulated_paths_have_the_forecast_variance(gamma: float) -> None:
    """Var of the cumulative shock = sum of the expected conditional variances (uncorrelated
    shocks); for GJR this checks the ``alpha + gamma/2 + beta`` persistence too. With 40,000
    paths of t(8) shocks the sample variance's relative standard error is about 1.5%."""
    p = GarchParams(**{**PARAMS.__dict__, "gamma": gamma, "alpha": 0.1 - gamma / 2})
    sims = simulate_cumulative(p, 10, 40_000, seed=3)
    np.testing.assert_allclose(sims.var(axis=0), np.cumsum(variance_path(p, 10)), rtol=0.06)


def test_bad_news_raises_gjr_variance_more() -> None:
    bad = GarchParams(**{**PARAMS.__dict__, "gamma": 0.1, "last_resid": -2.0})
    good = GarchParams(**{**PARAMS.__dict__, "gamma": 0.1, "last_resid": 2.0})
    assert bad.next_variance() - good.next_variance() == pytest.approx(0.1 * 4.0)


def test_simulation_is_deterministic_and_antithetic() -> None:
    a = simulate_cumulative(PARAMS, 5, 1000, seed=1)
    np.testing.assert_array_equal(a, simulate_cumulative(PARAMS, 5, 1000, seed=1))
    np.testing.assert_allclose(a[:500, 0], -a[500:, 0])


def test_scale_keeps_returns_near_unit_sd() -> None:
    assert choose_scale(np.array([0.03, -0.02, 0.01])) == 100.0
    assert choose_scale(np.array([0.003, -0.002, 0.001])) == 1000.0
    with pytest.raises(ForecastError, match="never change"):
        choose_scale(np.zeros(5))


@pytest.mark.slow
def test_volatility_clustering_widens_intervals_after_a_storm(clustered: pd.Series) -> None:
    calm = clustered.copy()
    stormy = clustered.copy()
    # Replace the last 5 days: flat vs. +-15% swings; the rest of the history is identical.
    calm.iloc[-5:] = calm.iloc[-6]
    stormy.iloc[-5:] = stormy.iloc[-6] * np.exp(np.cumsum([0.15, -0.15, 0.15, -0.15, 0.15]))
    width = {}
    for label, y in (("calm", calm), ("stormy", stormy)):
        fc = GarchForecaster().fit(y).predict(3)
        width[label] = np.log(fc["upper_95"] / fc["lower_95"]).to_numpy()
    assert np.all(width["stormy"] > 1.5 * width["calm"])


@pytest.mark.slow
def test_drift_garch_follows_a_trend() -> None:
    rng = np.random.default_rng(2)
    r = 0.01 + 0.01 * rng.standard_normal(400)
    y = price_series(100 * np.exp(np.cumsum(r)), start="2021-01-01")
    fc = forecaster_class("drift_garch")().fit(y).predict(10)
    growth = math.log(fc["mean"].iloc[-1] / y.iloc[-1]) / 10
    assert growth == pytest.approx(0.01, abs=0.003)
