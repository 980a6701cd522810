"""The calibrated band average: per-level bands from volatility-normalised in-window errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ForecastError, UsageError
from pipeline.forecasters import forecaster_class, make_forecaster
from pipeline.forecasters.band_average import BandAverage
from pipeline.forecasters.level_calibrated import (
    CALIBRATION_FILE,
    CalibratedBandAverage,
    next_variances,
)
from tests.helpers.prices import random_walk_prices

NAME = "calibrated_band_average"
#: The normal distribution's 90% quantile: the half-width of a Gaussian 80% band in sds.
NORMAL_80 = 1.2815515655446004


def student_t_walk(n: int, seed: int, df: float = 3.0) -> pd.Series:
    """Daily prices whose log returns are i.i.d. Student-t(df) with a constant 2% sd: a
    Gaussian band with the right variance covers too much at 80% (about 89% for df 3)."""
    rng = np.random.default_rng(seed)
    returns = 0.02 * rng.standard_t(df, n) * math.sqrt((df - 2) / df)
    index = pd.date_range("2015-01-01", periods=n + 1, freq="1D", tz="UTC", name="ds")
    return pd.Series(100.0 * np.exp(np.r_[0.0, np.cumsum(returns)]), index=index, name="y")


@pytest.fixture(scope="module")
def prices() -> pd.Series:
    return random_walk_prices(n=400, seed=11)


@pytest.fixture(scope="module")
def fitted(prices: pd.Series) -> CalibratedBandAverage:
    model = make_forecaster(NAME).fit(prices)
    assert isinstance(model, CalibratedBandAverage)
    return model


def test_registered() -> None:
    assert forecaster_class(NAME) is CalibratedBandAverage
    assert CalibratedBandAverage().get_params()["calibrate_levels"] == [80]


def test_median_is_the_last_price_and_95_band_is_the_band_averages(
    prices: pd.Series, fitted: CalibratedBandAverage
) -> None:
    fc = fitted.predict(10)
    plain = BandAverage().fit(prices).predict(10)
    assert np.allclose(fc["mean"], prices.iloc[-1], rtol=1e-12)
    pd.testing.assert_series_equal(fc["lower_95"], plain["lower_95"])
    pd.testing.assert_series_equal(fc["upper_95"], plain["upper_95"])
    # The 80% band is q_80 times the members' average sd, symmetric in log price.
    q = fitted.quantiles_[80]
    sd = fitted.scales(None, 10)[0]
    log_centre = np.log(fc["mean"].to_numpy())
    assert np.allclose(np.log(fc["upper_80"].to_numpy()) - log_centre, q * sd, rtol=1e-9)
    assert np.allclose(log_centre - np.log(fc["lower_80"].to_numpy()), q * sd, rtol=1e-9)
    assert not np.allclose(fc["upper_80"], plain["upper_80"])
    assert fitted.get_params()["calibration"]["quantiles"]["80"] == q


def test_in_window_variances_follow_the_fitted_garch_recursion(
    prices: pd.Series, fitted: CalibratedBandAverage
) -> None:
    log_returns = np.diff(np.log(prices.to_numpy()))
    for member in fitted.members_[1:]:
        v = next_variances(member.garch_, log_returns)  # type: ignore[attr-defined]
        assert v.shape == log_returns.shape
        assert v[-1] == pytest.approx(member.garch_.next_variance(), rel=1e-6)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_calibrated_on_a_student_t_walk_where_gaussian_bands_over_cover() -> None:
    """Held out: one-step forecasts from 400 origins after the training window."""
    y = student_t_walk(1900, seed=7)
    train, held_out = y.iloc[:1500], y.iloc[1500:]
    model = CalibratedBandAverage(horizon=1).fit(train)
    # Fat tails: the empirical 80% quantile of the normalised errors is below the normal one.
    assert model.quantiles_[80] < 0.95 * NORMAL_80
    hits = {80: 0, 95: 0, "naive_80": 0}
    for i in range(len(held_out)):
        fc = model.predict(1)
        naive = model.members_[0].predict(1)
        actual = float(held_out.iloc[i])
        for level in (80, 95):
            hits[level] += int(
                fc[f"lower_{level}"].iloc[0] <= actual <= fc[f"upper_{level}"].iloc[0]
            )
        hits["naive_80"] += int(naive["lower_80"].iloc[0] <= actual <= naive["upper_80"].iloc[0])
        model.update(held_out.iloc[i : i + 1])
    n = len(held_out)
    assert hits["naive_80"] / n > 0.84  # the Gaussian band over-covers at 80% (85.3%)
    assert 0.76 <= hits[80] / n <= 0.84
    assert 0.93 <= hits[95] / n <= 0.975


def test_save_load_round_trip(fitted: CalibratedBandAverage, tmp_path: Path) -> None:
    names = fitted.save(tmp_path)
    assert CALIBRATION_FILE in names
    loaded = CalibratedBandAverage.load(tmp_path, fitted.get_params())
    pd.testing.assert_frame_equal(loaded.predict(12), fitted.predict(12), check_exact=True)
    assert loaded.get_params() == fitted.get_params()


def test_unreadable_calibration_is_a_clear_error(
    fitted: CalibratedBandAverage, tmp_path: Path
) -> None:
    fitted.save(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ForecastError, match="unreadable band calibration"):
        CalibratedBandAverage.load(tmp_path, fitted.get_params())


def test_update_moves_the_origin_and_keeps_the_quantiles(prices: pd.Series) -> None:
    head, tail = prices.iloc[:-5], prices.iloc[-5:]
    model = CalibratedBandAverage().fit(head)
    q = dict(model.quantiles_)
    model.update(tail)
    fc = model.predict(3)
    assert model.quantiles_ == q
    assert np.allclose(fc["mean"], prices.iloc[-1], rtol=1e-12)
    assert fc["ds"].iloc[0] == prices.index[-1] + pd.Timedelta(days=1)


def test_refuses_members_without_a_closed_form_scale_and_bad_levels() -> None:
    with pytest.raises(UsageError, match="member drift has no closed-form random-walk scale"):
        CalibratedBandAverage(members=["naive", "drift"])
    with pytest.raises(UsageError, match=r"calibrate_levels must lie in \(0, 100\)"):
        CalibratedBandAverage(calibrate_levels=(80, 100))
    with pytest.raises(UsageError, match="cannot contain itself"):
        CalibratedBandAverage(members=["naive", "band_average"])


def test_weight_blends_the_calibrated_and_the_own_80_band(
    prices: pd.Series, fitted: CalibratedBandAverage
) -> None:
    plain = BandAverage().fit(prices).predict(6)
    own = CalibratedBandAverage(weight=0.0).fit(prices).predict(6)
    half = CalibratedBandAverage(weight=0.5).fit(prices).predict(6)
    full = fitted.predict(6)
    pd.testing.assert_frame_equal(own, plain)
    centre = np.log(plain["mean"].to_numpy())
    for side in ("lower_80", "upper_80"):
        widths = [np.abs(np.log(f[side].to_numpy()) - centre) for f in (plain, full, half)]
        assert np.allclose(widths[2], np.sqrt(widths[0] * widths[1]), rtol=1e-9)
    with pytest.raises(UsageError, match=r"weight must lie in \[0, 1\]"):
        CalibratedBandAverage(weight=1.5)
