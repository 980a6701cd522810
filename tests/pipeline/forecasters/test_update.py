"""``Forecaster.update``: the validation rules, and what every updatable model guarantees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ForecastError
from pipeline.forecasters import REGISTRY, forecaster_class, make_forecaster
from pipeline.forecasters.base import Forecaster
from pipeline.forecasters.baselines import Drift, Naive
from tests.helpers.prices import random_walk_prices

SLOW = {"arima", "prophet", "arima_garch", "conformal_garch", "aci_garch", "ensemble"}
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in REGISTRY]
#: Fitted-parameter keys that describe the origin (they move with an update).
ORIGIN_FIELDS = {"last_resid", "last_sigma2"}


@pytest.fixture(scope="module")
def prices() -> pd.Series:
    return random_walk_prices(n=330, seed=4)


def _model(name: str) -> Forecaster:
    params: dict[str, Any] = {"horizon": 5} if name.startswith(("conformal", "aci")) else {}
    if name == "ensemble":
        params = {"horizon": 5, "members": ["naive", "garch", "conformal_naive"]}
    return make_forecaster(name, **params)


def _without_origin(params: Any) -> Any:
    if isinstance(params, dict):
        return {k: _without_origin(v) for k, v in params.items() if k not in ORIGIN_FIELDS}
    if isinstance(params, list):
        return [_without_origin(v) for v in params]
    return params


def _reloaded(model: Forecaster, folder: Path) -> Forecaster:
    folder.mkdir()
    model.save(folder)
    return type(model).load(folder, model.get_params())


def _frame_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)


# -- the validation rules ---------------------------------------------------------------------
@pytest.fixture
def naive(prices: pd.Series) -> Naive:
    return Naive().fit(prices[:300])


def test_update_moves_the_origin_and_keeps_the_spread(naive: Naive, prices: pd.Series) -> None:
    sigma = naive.sigma_
    naive.update(prices[300:310])
    assert naive.last_ds_ == prices.index[309]
    assert naive.last_price_ == prices.iloc[309]
    assert naive.sigma_ == sigma
    fc = naive.predict(3)
    assert fc["ds"].tolist() == list(pd.date_range(prices.index[310], periods=3, freq="1D"))
    assert fc["mean"].tolist() == pytest.approx([prices.iloc[309]] * 3, rel=1e-12)


def test_update_accepts_naive_timestamps_as_utc(naive: Naive, prices: pd.Series) -> None:
    naive.update(prices[300:302].tz_convert(None))
    assert naive.last_ds_ == prices.index[301]
    assert str(naive.last_ds_.tz) == "UTC"


#: (positions of the update rows in ``prices``, the message of the rule they break)
TIMING_RULES = {
    "wrong start": (
        [301, 302, 303],
        r"^naive: update data must start at 2021-10-28T00:00:00\+00:00 \(one step after the "
        r"origin\), got 2021-10-29T00:00:00\+00:00$",
    ),
    "at the origin": ([299, 300], r"got 2021-10-27T00:00:00\+00:00 \(at or before the origin\)$"),
    "before the origin": ([295, 296], r"got .* \(at or before the origin\)$"),
    "gap": (
        [300, 301, 304, 305],
        r"^naive: update data has a gap at 2021-10-29T00:00:00\+00:00 -> "
        r"2021-11-01T00:00:00\+00:00 \(2 missing step\(s\)\)$",
    ),
    "backwards": (
        [300, 301, 303, 302],
        r"^naive: update data goes backwards in time at 2021-10-30T00:00:00\+00:00 "
        r"\(after 2021-10-31T00:00:00\+00:00\)$",
    ),
    "repeated": ([300, 301, 301], "goes backwards in time at 2021-10-29"),
}


@pytest.mark.parametrize("rule", TIMING_RULES)
def test_timing_rules(naive: Naive, prices: pd.Series, rule: str) -> None:
    positions, message = TIMING_RULES[rule]
    with pytest.raises(ForecastError, match=message):
        naive.update(prices.iloc[positions])
    assert naive.last_ds_ == prices.index[299]


def test_off_grid_timestamps_are_refused(naive: Naive, prices: pd.Series) -> None:
    y = pd.Series([1.0, 2.0], index=[prices.index[300], prices.index[300] + pd.Timedelta("6h")])
    with pytest.raises(ForecastError, match=r"off the model's 1 days 00:00:00 grid at "):
        naive.update(y)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 0.0, -5.0])
def test_non_finite_or_non_positive_prices_are_refused(
    naive: Naive, prices: pd.Series, bad: float
) -> None:
    y = prices[300:305].copy()
    y.iloc[3] = bad
    with pytest.raises(
        ForecastError,
        match=r"^naive: update data has a non-finite or non-positive price at "
        r"2021-10-31T00:00:00\+00:00 ",
    ):
        naive.update(y)


def test_not_a_series_is_refused(naive: Naive, prices: pd.Series) -> None:
    with pytest.raises(ForecastError, match="must be a pandas Series indexed by timestamps"):
        naive.update(prices[300:302].reset_index(drop=True))


def test_a_refused_update_changes_nothing(naive: Naive, prices: pd.Series) -> None:
    before = naive.predict(3)
    bad = prices[300:305].copy()
    bad.iloc[-1] = np.nan
    with pytest.raises(ForecastError):
        naive.update(bad)
    assert naive.last_ds_ == prices.index[299]
    _frame_equal(naive.predict(3), before)


def test_update_before_fit_is_refused() -> None:
    with pytest.raises(ForecastError, match=r"^drift: call fit\(\) before update\(\)$"):
        Drift().update(random_walk_prices(3))


def test_a_model_that_cannot_update_says_so(prices: pd.Series) -> None:
    class Frozen(Naive):
        name = "frozen"
        updatable = False

    model = Frozen().fit(prices[:300])
    with pytest.raises(ForecastError, match="^frozen: cannot update without refitting$"):
        model.update(prices[300:302])
    with pytest.raises(ForecastError, match="^frozen: cannot update without refitting$"):
        model.update(prices[300:300])


def test_a_composite_with_a_frozen_part_cannot_update(
    prices: pd.Series, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensemble = make_forecaster("ensemble", members=["naive", "drift"], horizon=5).fit(prices)
    conformal = make_forecaster("conformal_naive", horizon=5).fit(prices[:300])
    monkeypatch.setattr(Drift, "updatable", False)
    monkeypatch.setattr(Naive, "updatable", False)
    later = random_walk_prices(n=332, seed=4)[330:]
    with pytest.raises(
        ForecastError,
        match=r"^ensemble: cannot update without refitting \(member naive, drift cannot\)$",
    ):
        ensemble.update(later)
    with pytest.raises(
        ForecastError,
        match=r"^conformal_naive: cannot update without refitting \(its base model naive "
        r"cannot\)$",
    ):
        conformal.update(prices[300:302])


def test_every_registered_model_declares_whether_it_updates() -> None:
    assert {n: forecaster_class(n).updatable for n in REGISTRY} == dict.fromkeys(REGISTRY, True)


# -- what every updatable model guarantees -------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_update_contract(name: str, prices: pd.Series, tmp_path: Path) -> None:
    """Empty update: no-op; parameters kept; save -> load -> update equals updating in memory,
    in one batch or several, and an updated model survives save -> load."""
    model = _model(name).fit(prices[:300])
    before = model.predict(4)
    params = model.get_params()
    assert model.update(prices[300:300]) is model
    _frame_equal(model.predict(4), before)

    loaded = _reloaded(model, tmp_path / "fitted")
    loaded.update(prices[300:305]).update(prices[305:318])
    model.update(prices[300:318])
    assert model.last_ds_ == loaded.last_ds_ == prices.index[317]
    _frame_equal(loaded.predict(4), model.predict(4))
    assert model.predict(4)["ds"].iloc[0] == prices.index[318]
    after = model.get_params()
    if name.startswith("aci"):
        # ACI adapts: the forecasts issued at origins 299..312 have matured (5 steps each).
        assert after["calibration"]["n_origins"] == params["calibration"]["n_origins"] + 14
        assert after["calibration"]["origins"][-1] == prices.index[312].isoformat()
        after["calibration"] = params["calibration"]
    if name != "prophet":  # Prophet's update is a refit (see its module docstring)
        assert _without_origin(after) == _without_origin(params)
    assert not model.predict(4)["mean"].equals(before["mean"])

    again = _reloaded(model, tmp_path / "updated")
    _frame_equal(again.predict(4), model.predict(4))
    again.update(prices[318:330])
    model.update(prices[318:330])
    _frame_equal(again.predict(4), model.predict(4))
