"""Save -> load -> update equals a fit on the longer series with the parameters fixed.

For each family: fit on ``y[:n]``, save, load, update with ``y[n:m]`` and forecast; the
reference is a fit on ``y[:m]`` with the parameters estimated on ``y[:n]`` (each family's
fixed-parameter path: GARCH ``fixed_params``, ARIMA order + constant + ``coefficients``, ...).
"""

from __future__ import annotations

import copy
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ForecastError, UsageError
from pipeline.forecasters import make_forecaster
from pipeline.forecasters.arima import AutoARIMA
from pipeline.forecasters.arima_garch import ArimaGarch
from pipeline.forecasters.base import Forecaster
from pipeline.forecasters.composite import RollingForecasts
from pipeline.forecasters.conformal import Conformal
from pipeline.forecasters.conformal_scores import (
    adaptive_factors,
    normalised_scores,
    read_scores,
    stored_scores,
)
from pipeline.forecasters.ensemble import Ensemble
from pipeline.forecasters.garch import FIXABLE, GarchForecaster
from pipeline.forecasters.prophet_model import ProphetForecaster
from tests.helpers.prices import ar1_return_prices, garch_t_prices, random_walk_prices

N, M, H = 300, 340, 12
COLUMNS = ["mean", "lower_80", "upper_80", "lower_95", "upper_95"]


def _updated(model: Forecaster, y: pd.Series, folder: Path) -> Forecaster:
    """``model`` fitted on ``y[:N]``, saved, loaded and updated with ``y[N:M]`` in two batches."""
    model.fit(y[:N])
    model.save(folder)
    loaded = type(model).load(folder, model.get_params())
    return loaded.update(y[N : N + 7]).update(y[N + 7 : M])


def _assert_close(got: pd.DataFrame, want: pd.DataFrame, rtol: float) -> None:
    assert got["ds"].tolist() == want["ds"].tolist()
    np.testing.assert_allclose(got[COLUMNS].to_numpy(), want[COLUMNS].to_numpy(), rtol=rtol)


def _garch_fixed(model: GarchForecaster | ArimaGarch) -> dict[str, float]:
    return {k: getattr(model.garch_, k) for k in FIXABLE}


@pytest.mark.parametrize("name", ["naive", "drift"])
def test_baselines(name: str, tmp_path: Path) -> None:
    y = random_walk_prices(M, seed=5)
    model = _updated(make_forecaster(name), y, tmp_path)
    r = np.diff(np.log(y[:N].to_numpy()))
    sigma, drift = np.std(r, ddof=1), (np.mean(r) if name == "drift" else 0.0)
    k = np.arange(1, H + 1)
    sd = sigma * np.sqrt(k * (1 + k / r.size)) if name == "drift" else sigma * np.sqrt(k)
    centre = np.log(y.iloc[M - 1]) + drift * k
    got = model.predict(H)
    assert got["ds"].iloc[0] == y.index[M - 1] + pd.Timedelta(days=1)
    np.testing.assert_allclose(got["mean"], np.exp(centre), rtol=1e-13)
    for level in (80, 95):
        z = NormalDist().inv_cdf(0.5 + level / 200)
        np.testing.assert_allclose(got[f"upper_{level}"], np.exp(centre + z * sd), rtol=1e-13)
        np.testing.assert_allclose(got[f"lower_{level}"], np.exp(centre - z * sd), rtol=1e-13)


@pytest.mark.parametrize("name", ["garch", "gjr_garch", "drift_garch"])
def test_garch_family(name: str, tmp_path: Path) -> None:
    y = garch_t_prices(M, seed=2)
    fitted = make_forecaster(name)
    model = _updated(fitted, y, tmp_path)
    assert isinstance(fitted, GarchForecaster)
    reference = make_forecaster(name, fixed_params=_garch_fixed(fitted)).fit(y[:M])
    _assert_close(model.predict(H), reference.predict(H), rtol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("order", "constant"), [([0, 1, 0], False), ([1, 1, 1], True), ([2, 1, 0], True)]
)
def test_arima(order: list[int], constant: bool, tmp_path: Path) -> None:
    y = ar1_return_prices(0.4, n=M, seed=3)
    fitted = AutoARIMA(order=order, constant=constant)
    model = _updated(fitted, y, tmp_path)
    assert fitted.fitted_params()["order"] == order
    coefficients = fitted.state_["params"].tolist()
    reference = AutoARIMA(order=order, constant=constant, coefficients=coefficients).fit(y[:M])
    assert reference.fitted_params()["selection"] == "fixed_coefficients"
    # Kalman filter in numpy vs statsmodels' (its approximate-diffuse start): ~1e-9 apart.
    _assert_close(model.predict(H), reference.predict(H), rtol=1e-8)


def test_arima_coefficients_must_fit_the_order() -> None:
    y = ar1_return_prices(0.4, n=60, seed=3)
    with pytest.raises(ForecastError, match=r"ARIMA\(1, 1, 0\) cannot be filtered with "):
        AutoARIMA(order=[1, 1, 0], constant=False, coefficients=[0.1]).fit(y)
    with pytest.raises(UsageError, match="fixed coefficients need a fixed order and constant"):
        AutoARIMA(coefficients=[0.1, 1e-4])


@pytest.mark.slow
def test_arima_searched_order(tmp_path: Path) -> None:
    y = ar1_return_prices(0.3, n=M, seed=8)
    fitted = AutoARIMA()
    model = _updated(fitted, y, tmp_path)
    info = fitted.fitted_params()
    reference = AutoARIMA(
        order=info["order"], constant=info["constant"], coefficients=fitted.state_["params"]
    ).fit(y[:M])
    _assert_close(model.predict(H), reference.predict(H), rtol=1e-8)


def _arima_garch_reference(fitted: ArimaGarch, y: pd.Series) -> ArimaGarch:
    info = fitted.arima_.fitted_params()
    arima = {
        "order": info["order"],
        "constant": info["constant"],
        "coefficients": fitted.arima_.state_["params"].tolist(),
    }
    return ArimaGarch(arima_params=arima, fixed_params=_garch_fixed(fitted)).fit(y)


@pytest.mark.slow
@pytest.mark.parametrize("arima_params", [{}, {"order": [1, 1, 1]}, {"order": [2, 1, 0]}])
def test_arima_garch(arima_params: dict[str, Any], tmp_path: Path) -> None:
    y = garch_t_prices(M, seed=1)
    fitted = ArimaGarch(arima_params=arima_params)
    model = _updated(fitted, y, tmp_path)
    reference = _arima_garch_reference(fitted, y[:M])
    # ~1e-8 apart: the ARIMA state (see test_arima) goes through the psi weights.
    _assert_close(model.predict(H), reference.predict(H), rtol=5e-8)


@pytest.mark.slow
def test_split_conformal_keeps_its_factors(tmp_path: Path) -> None:
    y = garch_t_prices(M, seed=3)
    fitted = make_forecaster("conformal_garch", horizon=H, calibration_origins=20)
    model = _updated(fitted, y, tmp_path)
    assert isinstance(fitted, Conformal) and isinstance(model, Conformal)
    assert model.calibration_ == fitted.calibration_
    reference = copy.copy(fitted)
    reference.base_ = GarchForecaster(fixed_params=_garch_fixed(fitted.base_)).fit(y[:M])
    reference.last_ds_, reference.last_price_ = y.index[M - 1], float(y.iloc[M - 1])
    _assert_close(model.predict(H), reference.predict(H), rtol=1e-8)


def _issued_rows(fitted: Conformal, y: pd.Series, levels: list[int]) -> RollingForecasts:
    """Forecasts of the fixed-parameter base from every origin N-1..M-1-H, log units."""
    origins = range(N - 1, M - H)
    refs = [
        GarchForecaster(fixed_params=_garch_fixed(fitted.base_)).fit(y[: o + 1]).predict(H, levels)
        for o in origins
    ]
    log_y = np.log(y.to_numpy())
    return RollingForecasts(
        origins=[y.index[o] for o in origins],
        actual=np.array([log_y[o + 1 : o + 1 + H] for o in origins]),
        mean=np.log(np.array([r["mean"] for r in refs])),
        lower={lv: np.log(np.array([r[f"lower_{lv}"] for r in refs])) for lv in levels},
        upper={lv: np.log(np.array([r[f"upper_{lv}"] for r in refs])) for lv in levels},
    )


@pytest.mark.slow
def test_adaptive_conformal_feeds_the_matured_errors(tmp_path: Path) -> None:
    """ACI after an update = ACI calibrated over the fit's origins followed by every update
    origin whose H steps have been observed, scored against the base forecasts issued there."""
    y = garch_t_prices(M, seed=3)
    fitted = make_forecaster("aci_garch", horizon=H, calibration_origins=20)
    model = _updated(fitted, y, tmp_path)
    assert isinstance(fitted, Conformal) and isinstance(model, Conformal)
    p = fitted.params
    rows = _issued_rows(fitted, y, p["levels"])
    cal = model.calibration_
    assert cal["n_origins"] == 20 + (M - H - N + 1)
    assert cal["origins"][20:] == [ts.isoformat() for ts in rows.origins]
    assert len(model.pending_) == H - 1
    for level in p["levels"]:
        scores = np.vstack(
            [
                read_scores(fitted.calibration_["scores"][str(level)]),
                read_scores(stored_scores(normalised_scores(rows, level))),
            ]
        )
        np.testing.assert_allclose(read_scores(cal["scores"][str(level)]), scores, atol=2e-5)
        factors, used = adaptive_factors(scores, level, p["pool_steps"], p["gamma"], p["warmup"])
        np.testing.assert_allclose(cal["factors"][str(level)], factors, rtol=1e-12)
        assert cal["effective_level"][str(level)] == [round(float(u), 6) for u in used]
        assert cal["factors"][str(level)] != fitted.calibration_["factors"][str(level)]
    reference = copy.copy(fitted)
    reference.calibration_ = cal
    reference.base_ = GarchForecaster(fixed_params=_garch_fixed(fitted.base_)).fit(y[:M])
    reference.last_ds_, reference.last_price_ = y.index[M - 1], float(y.iloc[M - 1])
    _assert_close(model.predict(H), reference.predict(H), rtol=1e-8)


@pytest.mark.slow
def test_ensemble_updates_its_members(tmp_path: Path) -> None:
    y = garch_t_prices(M, seed=4)
    fitted = Ensemble(members=["garch", "arima_garch", "gjr_garch"], combine="inverse_mae")
    model = _updated(fitted, y, tmp_path)
    assert isinstance(model, Ensemble)
    np.testing.assert_array_equal(model.weights_, fitted.weights_)
    reference = copy.copy(fitted)
    garch, arima_garch, gjr = fitted.members_
    reference.members_ = [
        make_forecaster("garch", fixed_params=_garch_fixed(garch)).fit(y[:M]),  # type: ignore[arg-type]
        _arima_garch_reference(arima_garch, y[:M]),  # type: ignore[arg-type]
        make_forecaster("gjr_garch", fixed_params=_garch_fixed(gjr)).fit(y[:M]),  # type: ignore[arg-type]
    ]
    reference.last_ds_, reference.last_price_ = y.index[M - 1], float(y.iloc[M - 1])
    _assert_close(model.predict(H), reference.predict(H), rtol=5e-8)


@pytest.mark.slow
def test_prophet_update_is_a_refit_on_the_longer_series(tmp_path: Path) -> None:
    y = random_walk_prices(M, freq="1h", seed=6)
    model = _updated(ProphetForecaster(), y, tmp_path)
    reference = ProphetForecaster().fit(y[:M])
    _assert_close(model.predict(H), reference.predict(H), rtol=1e-12)
    assert model.fitted_params() == reference.fitted_params()
