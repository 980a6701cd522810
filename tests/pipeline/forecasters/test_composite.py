"""Forecasters built from others: where their calibration horizon comes from, member files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import get_settings
from pipeline.errors import UsageError
from pipeline.forecasters import horizon_params, make_forecaster
from pipeline.forecasters.baselines import Naive
from pipeline.forecasters.composite import (
    FALLBACK_HORIZON,
    calibration_origins,
    default_horizon,
    load_member,
    save_member,
)
from pipeline.forecasters.conformal import Conformal
from pipeline.forecasters.ensemble import Ensemble
from pipeline.series import FREQUENCY_TABLE
from tests.helpers.prices import random_walk_prices


@pytest.mark.parametrize(("step", "expected"), [("1h", 48), ("4h", 42), ("1D", 30), ("2D", 30)])
def test_default_horizon_is_the_frequency_tables(step: str, expected: int) -> None:
    assert default_horizon(pd.Timedelta(step)) == expected
    assert default_horizon(pd.Timedelta("15min")) == FALLBACK_HORIZON
    assert {f.name: f.horizon for f in FREQUENCY_TABLE.values()} == {"1h": 48, "4h": 42, "1d": 30}


def test_forecasters_never_read_the_horizon_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A HORIZON_1D override reaches a forecaster only through its caller's ``horizon``."""
    monkeypatch.setenv("HORIZON_1D", "5")
    get_settings.cache_clear()
    assert get_settings().horizon("1d") == 5
    y = random_walk_prices(n=300, seed=1)
    default = Conformal(base="naive", calibration_origins=10).fit(y)
    assert default.get_params()["calibration"]["horizon"] == 30
    given = Conformal(base="naive", calibration_origins=10, horizon=5).fit(y)
    assert given.get_params()["calibration"]["horizon"] == 5
    assert len(given.get_params()["calibration"]["factors"]["95"]) == 5


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("conformal_naive", {"horizon": 7}),
        ("aci_garch", {"horizon": 7}),
        ("ensemble", {"horizon": 7}),
        ("naive", {}),
        ("arima", {}),
        ("garch", {}),
        (Naive, {}),
        (Conformal, {"horizon": 7}),
    ],
)
def test_horizon_params_only_for_models_that_calibrate(model: object, expected: dict) -> None:
    assert horizon_params(model, 7) == expected  # type: ignore[arg-type]
    name = model if isinstance(model, str) else None
    if name is not None:
        make_forecaster(name, **horizon_params(name, 7))  # every model accepts what it gets


def test_an_ensemble_hands_its_horizon_to_calibrating_members(tmp_path: Path) -> None:
    y = random_walk_prices(n=300, seed=2)
    ens = Ensemble(members=["naive", "conformal_naive"], horizon=4).fit(y)
    naive_fit, conformal_fit = ens.fitted_params()["members_fitted"]
    assert conformal_fit["calibration"]["horizon"] == 4
    assert "calibration" not in naive_fit
    # A member's own horizon wins over the ensemble's.
    own = Ensemble(
        members=["naive", "conformal_naive"], member_params=[{}, {"horizon": 3}], horizon=4
    ).fit(y)
    assert own.fitted_params()["members_fitted"][1]["calibration"]["horizon"] == 3
    # Saved and loaded, the ensemble forecasts exactly as before.
    ens.save(tmp_path)
    loaded = Ensemble.load(tmp_path, ens.get_params())
    pd.testing.assert_frame_equal(loaded.predict(6), ens.predict(6), check_exact=True)


@pytest.mark.parametrize("bad", [0, -3, True])
def test_a_horizon_below_one_is_a_usage_error(bad: int) -> None:
    with pytest.raises(UsageError, match="horizon must be an integer >= 1"):
        Conformal(horizon=bad)
    with pytest.raises(UsageError, match="horizon must be an integer >= 1"):
        Ensemble(horizon=bad)


def test_calibration_origins_leave_a_whole_horizon_after_each() -> None:
    assert calibration_origins(100, 20, 10, 5) == [20, 38, 55, 72, 90]  # evenly spread, rounded
    assert calibration_origins(100, 20, 10, 1) == [90]
    assert calibration_origins(25, 20, 10, 5) == []


def test_a_member_round_trips_under_its_prefix(tmp_path: Path) -> None:
    member = Naive().fit(random_walk_prices(n=50))
    names = save_member(member, tmp_path, "m0__")
    assert names == ["m0__state.json", "m0__baseline.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    back = load_member(Naive, tmp_path, "m0__", ["state.json", "baseline.json"], {})
    pd.testing.assert_frame_equal(back.predict(3), member.predict(3), check_exact=True)
