"""Forecast combination: identical members, quantile averaging, accuracy weights, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import UsageError
from pipeline.forecasters import make_forecaster
from pipeline.forecasters.ensemble import Ensemble, combine_columns
from tests.helpers.prices import price_series, random_walk_prices


@pytest.fixture(scope="module")
def prices() -> pd.Series:
    return random_walk_prices(n=400, seed=4)


@pytest.mark.parametrize("combine", ["median", "mean", "inverse_mae"])
@pytest.mark.parametrize("member", ["naive", pytest.param("garch", marks=pytest.mark.slow)])
def test_ensemble_of_identical_members_equals_the_member(
    member: str, combine: str, prices: pd.Series
) -> None:
    alone = make_forecaster(member).fit(prices).predict(12)
    ens = Ensemble(members=[member] * 3, combine=combine, horizon=5).fit(prices)
    pd.testing.assert_frame_equal(ens.predict(12), alone, check_exact=True)


def test_combination_is_quantile_averaging_in_log_space(prices: pd.Series) -> None:
    a = make_forecaster("naive").fit(prices).predict(6)
    b = make_forecaster("drift").fit(prices).predict(6)
    fc = Ensemble(members=["naive", "drift"], combine="mean").fit(prices).predict(6)
    for col in ("mean", "lower_80", "upper_80", "lower_95", "upper_95"):
        expected = np.exp((np.log(a[col]) + np.log(b[col])) / 2)
        np.testing.assert_allclose(fc[col], expected, rtol=1e-12)


def test_median_combination_ignores_an_outlying_member() -> None:
    values = np.log(np.array([[100.0, 101.0], [102.0, 103.0], [1e6, 1e6]]))
    np.testing.assert_allclose(
        np.exp(combine_columns(values, "median", np.ones(3) / 3)), [102, 103]
    )


def test_inverse_mae_weights_favour_the_accurate_member() -> None:
    # A steady 1% daily trend with small noise: drift forecasts it, naive lags behind.
    rng = np.random.default_rng(0)
    r = 0.01 + 0.002 * rng.standard_normal(300)
    y = price_series(100 * np.exp(np.cumsum(r)), start="2021-01-01")
    ens = Ensemble(members=["naive", "drift"], combine="inverse_mae", horizon=10).fit(y)
    params = ens.get_params()
    w = params["weights"]
    assert sum(w) == pytest.approx(1.0)
    assert w[1] > 0.8  # drift's MAE is a small fraction of naive's
    assert params["member_mae_log"][1] < params["member_mae_log"][0]


def test_save_load_keeps_weights_and_forecasts(prices: pd.Series, tmp_path: Path) -> None:
    ens = Ensemble(members=["naive", "drift"], combine="inverse_mae", horizon=5).fit(prices)
    before = ens.predict(7)
    names = ens.save(tmp_path)
    assert {"m0__state.json", "m1__state.json", "ensemble.json"} <= set(names)
    loaded = Ensemble.load(tmp_path, ens.get_params())
    pd.testing.assert_frame_equal(loaded.predict(7), before, check_exact=True)
    assert loaded.get_params() == ens.get_params()


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="combine must be one of"):
        Ensemble(combine="vote")
    with pytest.raises(UsageError, match="at least one member"):
        Ensemble(members=[])
    with pytest.raises(UsageError, match="cannot contain itself"):
        Ensemble(members=["naive", "ensemble"])
    with pytest.raises(UsageError, match="one dict per member"):
        Ensemble(members=["naive", "drift"], member_params=[{}])
    with pytest.raises(UsageError, match="unknown model"):
        Ensemble(members=["nope"])
