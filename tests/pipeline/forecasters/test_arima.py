"""AutoARIMA: order recovery on simulated series, fixed orders, fallback, exact intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter

from pipeline.errors import UsageError
from pipeline.forecasters import arima as arima_module
from pipeline.forecasters.arima import AutoARIMA, parse_order, state_space_forecast

pytestmark = pytest.mark.slow


def simulated(phi: float, n: int = 400, seed: int = 0) -> pd.Series:
    """Prices whose log follows ARIMA(1,1,0) with AR coefficient ``phi`` (0: a random walk)."""
    rng = np.random.default_rng(seed)
    returns = lfilter([1.0], [1.0, -phi], 0.02 * rng.standard_normal(n))
    index = pd.date_range("2020-01-01", periods=n, freq="1D", tz="UTC")
    return pd.Series(100.0 * np.exp(np.cumsum(returns)), index=index)


def test_recovers_arima_110() -> None:
    model = AutoARIMA().fit(simulated(0.6))
    info = model.fitted_params()
    assert info["order"] == [1, 1, 0]
    assert info["selection"] == "stepwise"
    assert not info["fallback"]
    assert info["n_models"] >= 5
    assert info["d_tests"][0]["pvalue"] < 0.05  # KPSS rejects stationarity of the level
    assert np.isfinite(info["aicc"])


def test_random_walk_is_differenced_once() -> None:
    info = AutoARIMA().fit(simulated(0.0)).fitted_params()
    assert info["order"][1] == 1
    assert info["order"] == [0, 1, 0]


def test_adf_test_also_finds_one_difference() -> None:
    info = AutoARIMA(test="adf").fit(simulated(0.6)).fitted_params()
    assert info["order"][1] == 1


def test_fixed_order_is_honoured() -> None:
    model = AutoARIMA(order="2,1,1").fit(simulated(0.6))
    info = model.get_params()
    assert info["order"] == [2, 1, 1]
    assert info["selection"] == "fixed"
    assert info["d_tests"] == []
    assert (
        AutoARIMA(order=(0, 1, 0), constant=False).fit(simulated(0.6)).fitted_params()["trend"]
        == "none"
    )


@pytest.mark.parametrize("bad", ["1,1", "a,b,c", "1,3,0", "-1,1,0", "11,1,0"])
def test_invalid_orders_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match="invalid ARIMA order"):
        parse_order(bad)


def test_intervals_match_statsmodels_forecast_distribution() -> None:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    y = simulated(0.6, n=300, seed=4)
    model = AutoARIMA(order=(1, 1, 1), constant=True).fit(y)
    p, d, q = model.fitted_params()["order"]
    res = SARIMAX(np.log(y.to_numpy()), order=(p, d, q), trend="c").filter(model.state_["params"])
    expected = res.get_forecast(20)
    mean, var = state_space_forecast(model.state_, 20)
    assert np.allclose(mean, expected.predicted_mean)
    assert np.allclose(np.sqrt(var), expected.se_mean)
    fc = model.predict(20, levels=(95,))
    lower, upper = np.exp(expected.conf_int(alpha=0.05)).T
    assert np.allclose(fc["lower_95"], lower)
    assert np.allclose(fc["upper_95"], upper)


def test_fallback_order_when_no_candidate_converges(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fit = arima_module.fit_exact

    def failing(logy, order, constant, **kwargs):  # type: ignore[no-untyped-def]
        return None if order != (0, order[1], 0) else real_fit(logy, order, constant, **kwargs)

    monkeypatch.setattr(arima_module, "fit_exact", failing)
    info = AutoARIMA(order=(2, 1, 1)).fit(simulated(0.6)).fitted_params()
    assert info["fallback"] is True
    assert info["order"] == [0, 1, 0]


def test_saved_model_is_small(tmp_path: Path) -> None:
    model = AutoARIMA().fit(simulated(0.6))
    names = model.save(tmp_path)
    assert sum((tmp_path / n).stat().st_size for n in names) < 64 * 1024
