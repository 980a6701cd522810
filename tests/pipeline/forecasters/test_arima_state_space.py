"""The exact ARIMA fit: closed-form ARIMA(0,d,0), failures as None, state-space forecasts."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.forecasters.arima_search import WarningCounter
from pipeline.forecasters.arima_state_space import (
    MIN_SIGMA2,
    fit_exact,
    state_space_forecast,
    white_noise_mle,
)


def test_white_noise_mle_is_the_sample_mean_and_variance() -> None:
    w = np.array([0.01, -0.02, 0.03, 0.0])
    assert white_noise_mle(w, constant=True) == pytest.approx([0.005, np.var(w)])
    assert white_noise_mle(w, constant=False) == pytest.approx([np.mean(w**2)])
    # A flat series still gives a usable (tiny, positive) variance.
    assert white_noise_mle(np.zeros(5), constant=False) == pytest.approx([MIN_SIGMA2])
    assert white_noise_mle(np.array([]), constant=True) == pytest.approx([0.0, MIN_SIGMA2])


def test_random_walk_forecast_is_flat_with_variance_growing_linearly() -> None:
    rng = np.random.default_rng(0)
    logy = np.log(100.0) + np.cumsum(0.02 * rng.standard_normal(300))
    fit = fit_exact(logy, (0, 1, 0), False, start=None, maxiter=50, counter=WarningCounter())
    assert fit is not None and fit.converged and fit.order == (0, 1, 0)
    mean, var = state_space_forecast(fit.state, 5)
    assert mean == pytest.approx(np.full(5, logy[-1]))
    sigma2 = float(np.mean(np.diff(logy) ** 2))
    assert var == pytest.approx(sigma2 * np.arange(1, 6))


def test_a_fit_that_raises_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    def broken(self, *args, **kwargs):
        raise np.linalg.LinAlgError("singular")

    monkeypatch.setattr(SARIMAX, "fit", broken)
    logy = np.log(np.linspace(100.0, 120.0, 60))
    assert fit_exact(logy, (1, 1, 0), True, start=None, maxiter=5, counter=WarningCounter()) is None
