"""The forecaster contract, checked for every registered forecaster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ForecastError
from pipeline.forecasters import REGISTRY, forecaster_class, interval_columns, make_forecaster
from tests.helpers.prices import random_walk_prices

#: Real models are slow to fit: their cases carry the ``slow`` mark.
SLOW = {"arima", "prophet", "arima_garch", "conformal_garch", "aci_garch", "ensemble"}
OURS = ("naive", "drift", "arima", "prophet")
#: Forecast-quality models: GARCH family, conformal wrappers, ensemble.
QUALITY = (
    "garch",
    "gjr_garch",
    "drift_garch",
    "arima_garch",
    "conformal_naive",
    "conformal_garch",
    "aci_naive",
    "aci_garch",
    "ensemble",
    "band_average",
    "calibrated_band_average",
)
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in OURS + QUALITY]


@pytest.fixture(scope="module")
def prices() -> pd.Series:
    return random_walk_prices(n=300, seed=3)


@pytest.fixture(scope="module")
def fitted() -> dict[str, object]:
    """Fitted models shared by the module's tests (fits are the slow part)."""
    return {}


def _fit(name: str, prices: pd.Series, cache: dict[str, object]):
    if name not in cache:
        cache[name] = make_forecaster(name).fit(prices)
    return cache[name]


def test_every_registered_forecaster_is_checked_here() -> None:
    assert set(REGISTRY) == set(OURS + QUALITY)


def test_registry_lists_our_models() -> None:
    for name in OURS:
        assert name in REGISTRY
        cls = forecaster_class(name)
        assert cls.name == name
    complexity = [forecaster_class(n).complexity for n in OURS]
    assert complexity == [0, 1, 2, 3]


@pytest.mark.parametrize("name", NAMES)
def test_forecast_frame_contract(name: str, prices: pd.Series, fitted: dict) -> None:
    model = _fit(name, prices, fitted)
    fc = model.predict(12)
    assert list(fc.columns) == interval_columns((80, 95))
    assert len(fc) == 12
    step = prices.index[1] - prices.index[0]
    expected = pd.date_range(prices.index[-1] + step, periods=12, freq=step, tz="UTC")
    assert (pd.DatetimeIndex(fc["ds"]) == expected).all()
    values = fc.drop(columns="ds").to_numpy()
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    assert (fc["lower_95"] <= fc["lower_80"]).all()
    assert (fc["lower_80"] <= fc["mean"]).all()
    assert (fc["mean"] <= fc["upper_80"]).all()
    assert (fc["upper_80"] <= fc["upper_95"]).all()
    # Intervals are not degenerate; for the random-walk-like models they widen with the
    # horizon (relative width). Prophet's are dominated by its constant noise term.
    rel_width = np.log(fc["upper_95"] / fc["lower_95"]).to_numpy()
    assert rel_width[0] > 0
    if name != "prophet":
        assert rel_width[-1] > rel_width[0]


@pytest.mark.parametrize("name", NAMES)
def test_horizon_handling(name: str, prices: pd.Series, fitted: dict) -> None:
    model = _fit(name, prices, fitted)
    one = model.predict(1)
    assert len(one) == 1
    assert one["ds"].iloc[0] == prices.index[-1] + (prices.index[1] - prices.index[0])
    assert list(model.predict(3, levels=(50, 90, 99)).columns) == interval_columns((50, 90, 99))
    for bad in (0, -2):
        with pytest.raises(ForecastError, match="horizon must be an integer >= 1"):
            model.predict(bad)
    with pytest.raises(ForecastError, match="horizon"):
        model.predict(2.5)  # type: ignore[arg-type]
    with pytest.raises(ForecastError, match="interval level"):
        model.predict(3, levels=(80, 100))


@pytest.mark.parametrize("name", OURS + QUALITY)
def test_refuses_too_short_series(name: str) -> None:
    cls = forecaster_class(name)
    short = random_walk_prices(n=cls.min_points - 1)
    with pytest.raises(ForecastError, match=rf"{name}: series too short \(\d+ points\); needs"):
        cls().fit(short)


@pytest.mark.parametrize("name", OURS + QUALITY)
def test_predict_before_fit_is_an_error(name: str) -> None:
    with pytest.raises(ForecastError, match="call fit"):
        make_forecaster(name).predict(3)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_gives_identical_forecasts(
    name: str, prices: pd.Series, fitted: dict, tmp_path: Path
) -> None:
    model = _fit(name, prices, fitted)
    before = model.predict(10)
    names = model.save(tmp_path)
    assert "state.json" in names
    assert all((tmp_path / n).is_file() for n in names)
    # The artifact store passes get_params() (fitted values included) back to load().
    loaded = forecaster_class(name).load(tmp_path, model.get_params())
    pd.testing.assert_frame_equal(loaded.predict(10), before, check_exact=True)
    assert loaded.get_params() == model.get_params()
    # Predicting twice gives the same answer (seeded sampling, no hidden state).
    pd.testing.assert_frame_equal(loaded.predict(10), before, check_exact=True)


@pytest.mark.parametrize("name", NAMES)
def test_hourly_series_steps_by_the_hour(name: str, fitted: dict) -> None:
    y = random_walk_prices(n=240, freq="1h", seed=5)
    fc = make_forecaster(name).fit(y).predict(5)
    assert (fc["ds"].diff().dropna() == pd.Timedelta(hours=1)).all()
    assert fc["ds"].iloc[0] == y.index[-1] + pd.Timedelta(hours=1)
