"""The band average: the random walk's median, each quantile the log-average of the members'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import UsageError
from pipeline.forecasters import DEFAULT_MODELS, forecaster_class, make_forecaster
from pipeline.forecasters.band_average import BAND_MEMBERS, BandAverage
from tests.helpers.prices import random_walk_prices

COLUMNS = ("lower_80", "upper_80", "lower_95", "upper_95")


@pytest.fixture(scope="module")
def prices() -> pd.Series:
    return random_walk_prices(n=400, seed=11)


@pytest.fixture(scope="module")
def fitted(prices: pd.Series) -> BandAverage:
    model = make_forecaster("band_average").fit(prices)
    assert isinstance(model, BandAverage)
    return model


def test_registered_by_default_with_the_random_walk_median_bands() -> None:
    assert forecaster_class("band_average") is BandAverage
    assert "band_average" in DEFAULT_MODELS
    assert BandAverage().get_params()["members"] == list(BAND_MEMBERS)
    assert BandAverage().get_params()["combine"] == "mean"


def test_median_is_the_last_price_and_bands_are_log_averages(
    prices: pd.Series, fitted: BandAverage
) -> None:
    fc = fitted.predict(10)
    np.testing.assert_allclose(fc["mean"], prices.iloc[-1], rtol=1e-12)
    members = [make_forecaster(m).fit(prices).predict(10) for m in BAND_MEMBERS]
    for col in COLUMNS:
        expected = np.exp(np.mean([np.log(m[col].to_numpy(float)) for m in members], axis=0))
        np.testing.assert_allclose(fc[col], expected, rtol=1e-9)
    # the band lies between the narrowest and the widest member's, step by step
    widths = np.stack([(m["upper_95"] / m["lower_95"]).to_numpy(float) for m in members])
    own = (fc["upper_95"] / fc["lower_95"]).to_numpy(float)
    assert np.all(own >= widths.min(axis=0) - 1e-12) and np.all(own <= widths.max(axis=0) + 1e-12)


def test_save_load_round_trip(fitted: BandAverage, tmp_path: Path) -> None:
    before = fitted.predict(7)
    fitted.save(tmp_path)
    loaded = BandAverage.load(tmp_path, fitted.get_params())
    pd.testing.assert_frame_equal(loaded.predict(7), before, check_exact=True)


def test_calibration_params_refit_every_member_with_its_fitted_parameters(
    prices: pd.Series, fitted: BandAverage
) -> None:
    params = fitted.calibration_params()
    assert len(params["member_params"]) == len(BAND_MEMBERS)
    garch = params["member_params"][BAND_MEMBERS.index("garch")]
    assert garch["fixed_params"] == fitted.members_[1].calibration_params()["fixed_params"]
    # a refit on the data before an origin keeps the GARCH parameters of the full fit
    refit = BandAverage(**params).fit(prices.iloc[:300])
    assert refit.members_[1].calibration_params()["fixed_params"] == garch["fixed_params"]


def test_cannot_contain_itself() -> None:
    with pytest.raises(UsageError, match="cannot contain itself"):
        BandAverage(members=["naive", "band_average"])
