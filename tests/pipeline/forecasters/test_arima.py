"""AutoARIMA: order recovery on simulated series, fixed orders, fallback, exact intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ForecastError, UsageError
from pipeline.forecasters import arima as arima_module
from pipeline.forecasters.arima import AutoARIMA, parse_order
from pipeline.forecasters.arima_state_space import state_space_forecast
from tests.helpers.prices import ar1_return_prices, price_series

pytestmark = pytest.mark.slow


def test_recovers_arima_110() -> None:
    model = AutoARIMA().fit(ar1_return_prices(0.6))
    info = model.fitted_params()
    assert info["order"] == [1, 1, 0]
    assert info["selection"] == "stepwise"
    assert not info["fallback"]
    assert info["n_models"] >= 5
    assert info["d_tests"][0]["pvalue"] < 0.05  # KPSS rejects stationarity of the level
    assert np.isfinite(info["aicc"])


def test_random_walk_is_differenced_once() -> None:
    info = AutoARIMA().fit(ar1_return_prices(0.0)).fitted_params()
    assert info["order"][1] == 1
    assert info["order"] == [0, 1, 0]


def test_adf_test_also_finds_one_difference() -> None:
    info = AutoARIMA(test="adf").fit(ar1_return_prices(0.6)).fitted_params()
    assert info["order"][1] == 1


def test_fixed_order_is_honoured() -> None:
    model = AutoARIMA(order="2,1,1").fit(ar1_return_prices(0.6))
    info = model.get_params()
    assert info["order"] == [2, 1, 1]
    assert info["selection"] == "fixed"
    assert info["d_tests"] == []
    random_walk = AutoARIMA(order=(0, 1, 0), constant=False).fit(ar1_return_prices(0.6))
    assert random_walk.fitted_params()["trend"] == "none"


@pytest.mark.parametrize("bad", ["1,1", "a,b,c", "1,3,0", "-1,1,0", "11,1,0"])
def test_invalid_orders_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match="invalid ARIMA order"):
        parse_order(bad)


def test_intervals_match_statsmodels_forecast_distribution() -> None:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    y = ar1_return_prices(0.6, n=300, seed=4)
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

    def failing(logy, order, constant, **kwargs):
        return None if order != (0, order[1], 0) else real_fit(logy, order, constant, **kwargs)

    monkeypatch.setattr(arima_module, "fit_exact", failing)
    info = AutoARIMA(order=(2, 1, 1)).fit(ar1_return_prices(0.6)).fitted_params()
    assert info["fallback"] is True
    assert info["order"] == [0, 1, 0]


def test_fallback_from_a_level_search_is_the_random_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the search ran at d = 0 (KPSS saw a stationary level) and nothing converged, the
    fallback is ARIMA(0,1,0), not a constant mean that drags forecasts to the window average."""
    real_fit = arima_module.fit_exact

    def failing(logy, order, constant, **kwargs):
        return None if order != (0, 1, 0) else real_fit(logy, order, constant, **kwargs)

    monkeypatch.setattr(arima_module, "fit_exact", failing)
    monkeypatch.setattr(arima_module, "choose_d", lambda *a, **k: (0, []))
    y = ar1_return_prices(0.6)
    model = AutoARIMA().fit(y)
    info = model.fitted_params()
    assert info["fallback"] is True
    assert info["order"] == [0, 1, 0] and info["constant"] is False
    assert model.predict(5)["mean"].to_numpy() == pytest.approx(float(y.iloc[-1]))


def test_saved_model_is_small(tmp_path: Path) -> None:
    model = AutoARIMA().fit(ar1_return_prices(0.6))
    names = model.save(tmp_path)
    assert sum((tmp_path / n).stat().st_size for n in names) < 64 * 1024


def trending_returns(n: int = 400, seed: int = 0) -> pd.Series:
    """Prices whose log returns wander slowly (a bubble's momentum): KPSS reads them as I(2)."""
    rng = np.random.default_rng(seed)
    returns = 0.002 * np.cumsum(rng.standard_normal(n)) + 0.02 * rng.standard_normal(n)
    return price_series(100.0 * np.exp(np.cumsum(returns)))


def test_log_prices_are_differenced_at_most_once_by_default() -> None:
    y = trending_returns()
    model = AutoARIMA().fit(y)
    assert model.get_params()["max_d"] == 1
    assert model.fitted_params()["order"][1] == 1
    # The 30-day band stays a band around the price, not a multiple of it.
    fc = model.predict(30, levels=(95,))
    assert fc["upper_95"].iloc[-1] < 3 * y.iloc[-1]
    # Still configurable: the same series is I(2) to the KPSS rule.
    assert AutoARIMA(max_d=2).fit(y).fitted_params()["order"][1] == 2


@pytest.mark.parametrize("bad", [3, -1, True])
def test_invalid_max_d_is_a_usage_error(bad: int) -> None:
    with pytest.raises(UsageError, match="max_d must be 0, 1 or 2"):
        AutoARIMA(max_d=bad)


#: ETH/USD daily closes 2020-10-16 .. 2020-11-14 (CoinGecko export in ../shared/data): a
#: conformal calibration refit of ARIMA(0,1,0) without constant on this window raised "even the
#: fallback ARIMA(0,1,0) failed to fit" (L-BFGS, started at the optimum, stopped with
#: ABNORMAL_TERMINATION_IN_LNSRCH and statsmodels reported non-convergence).
ETH_WINDOW = [
    377.15868107868175, 365.9906423831468, 368.6504703636898, 378.0493653237596,
    379.6394773321801, 368.2270142350454, 391.16674217757225, 413.2018903361906,
    408.88948864371923, 411.95921775305027, 406.157094148215, 393.38290839224464,
    403.529837833562, 388.87733988207765, 386.4460129872924, 382.9007710380906,
    385.8445887975079, 394.9363420491719, 383.8498034220404, 387.616373722075,
    401.7330968324722, 415.9277704309719, 454.6515430984697, 435.4183540833094,
    455.3583669721691, 445.0512933420698, 449.8161845012962, 463.18087172032307,
    462.2056195794902, 475.9690936576015,
]  # fmt: skip


def test_random_walk_without_constant_fits_the_eth_window() -> None:
    y = price_series(ETH_WINDOW, start="2020-10-16")
    info = AutoARIMA(order=(0, 1, 0), constant=False).fit(y).fitted_params()
    assert info["order"] == [0, 1, 0]
    assert info["trend"] == "none"
    assert info["fallback"] is False
    assert info["n_warnings"] == 0


@pytest.mark.parametrize(
    "prices",
    [
        np.full(60, 100.0),  # a stablecoin or a market with no trades
        np.r_[np.full(30, 100.0), np.full(30, 101.0)],  # flat segments and one step
    ],
    ids=["flat", "step"],
)
@pytest.mark.parametrize(
    "kwargs", [{}, {"order": (0, 1, 0), "constant": False}, {"order": "1,1,1"}]
)
def test_fallback_never_fails_on_flat_segments(prices: np.ndarray, kwargs: dict) -> None:
    model = AutoARIMA(**kwargs).fit(price_series(prices, start="2020-10-16"))
    assert model.fitted_params()["order"][1] == 1
    fc = model.predict(5)
    values = fc.drop(columns="ds").to_numpy()
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    assert fc["mean"].iloc[0] == pytest.approx(prices[-1], rel=0.01)


def test_random_walk_is_closed_form_and_needs_no_optimiser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    def no_fit(self, *args, **kwargs):
        raise ValueError("optimiser unavailable")

    monkeypatch.setattr(SARIMAX, "fit", no_fit)
    y = ar1_return_prices(0.0, n=200, seed=2)
    w = np.diff(np.log(y.to_numpy()))
    model = AutoARIMA(order=(0, 1, 0), constant=False).fit(y)
    assert model.state_["params"] == pytest.approx([np.mean(w**2)])
    drift = AutoARIMA(order=(0, 1, 0), constant=True).fit(y)
    assert drift.state_["params"] == pytest.approx([np.mean(w), np.var(w)])
    # The closed form is the maximum-likelihood fit: statsmodels' own optimum agrees.
    monkeypatch.undo()
    res = SARIMAX(np.log(y.to_numpy()), order=(0, 1, 0), trend="c").fit(disp=False)
    assert drift.state_["params"] == pytest.approx(res.params, rel=1e-3)
    assert drift.fitted_params()["aicc"] == pytest.approx(res.aicc, abs=1e-3)
    # With every optimiser fit failing, the fallback still gives a model, never an error.
    monkeypatch.setattr(SARIMAX, "fit", no_fit)
    info = AutoARIMA(order=(2, 1, 1)).fit(y).fitted_params()
    assert info["fallback"] is True
    assert info["order"] == [0, 1, 0]


def test_fallback_error_is_still_raised_when_nothing_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(arima_module, "fit_exact", lambda *args, **kwargs: None)
    with pytest.raises(ForecastError, match="even the fallback ARIMA"):
        AutoARIMA(order=(1, 1, 0)).fit(ar1_return_prices(0.6))
