"""Exact maximum-likelihood fit of one ARIMA order, and forecasts from its state-space form.

:func:`fit_exact` refits a candidate of the CSS search by Gaussian maximum likelihood
(statsmodels ``SARIMAX``, Kalman filter, the CSS values as the starting point) and keeps only
what forecasting needs: the system matrices, the last predicted state and its covariance (a few
kB). :func:`state_space_forecast` turns that state into the mean and variance of the 1..h-step
forecasts, so a loaded model forecasts exactly like the fitted one without statsmodels'
results object.

ARIMA(0, d, 0) (with or without a constant) is never optimised: its maximum-likelihood
estimates have a closed form (:func:`white_noise_mle`), so it cannot fail to converge. Given
``params``, :func:`fit_exact` only runs the Kalman filter with them (a fixed-coefficient fit).

:func:`extend_state` runs the same Kalman filter on through new observations with the stored
matrices (statsmodels' ``results.append(..., refit=False)`` without the results object): the
state it reaches is the one a fixed-coefficient fit on the longer series ends in.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np

from pipeline.forecasters.arima_search import Candidate, WarningCounter, split_params

logger = logging.getLogger(__name__)


def single_blas_thread() -> AbstractContextManager[object]:
    """Limit BLAS to one thread while fitting, when threadpoolctl is installed.

    The state-space matrices are tiny: OpenBLAS threads only add overhead, and on a busy machine
    their spin-waits made each likelihood evaluation ~30x slower (measured: 24 ms vs 0.6 ms).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: fitting is only slower without it
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class ExactFit:
    order: tuple[int, int, int]
    constant: bool
    aicc: float
    converged: bool
    state: dict[str, np.ndarray]


def _start_params(cand: Candidate | None, p: int, constant: bool) -> np.ndarray | None:
    """SARIMAX parameters (intercept, ar, ma, sigma2) from CSS estimates."""
    if cand is None or not cand.params:
        return None
    theta = np.asarray(cand.params[:-1])
    mu, phi, ma = split_params(theta, p, constant)
    head = [mu * (1.0 - float(np.sum(phi)))] if constant else []
    return np.r_[head, phi, ma, cand.params[-1]]


#: Smallest innovation variance used for a closed-form fit (a perfectly flat series).
MIN_SIGMA2 = 1e-20


def white_noise_mle(w: np.ndarray, constant: bool) -> np.ndarray:
    """SARIMAX parameters ``[intercept,] sigma2`` of ARIMA(0, d, 0) from its differences ``w``.

    The model says ``w`` is i.i.d. normal (mean ``mu`` with a constant, else 0), and SARIMAX's
    likelihood skips the first ``d`` (diffuse) observations, so the maximum-likelihood estimates
    are the sample mean and the mean squared deviation of ``w``: no optimiser is needed.
    """
    mu = float(np.mean(w)) if constant and w.size else 0.0
    sigma2 = float(np.mean((w - mu) ** 2)) if w.size else 0.0
    sigma2 = max(sigma2, MIN_SIGMA2) if np.isfinite(sigma2) else MIN_SIGMA2
    return np.array([mu, sigma2] if constant else [sigma2])


def fit_exact(
    logy: np.ndarray,
    order: tuple[int, int, int],
    constant: bool,
    *,
    start: Candidate | None,
    maxiter: int,
    counter: WarningCounter,
    params: np.ndarray | None = None,
) -> ExactFit | None:
    """Maximum-likelihood fit of one order; ``None`` when it fails or does not converge.

    With ``params`` (SARIMAX order: ``[intercept,] ar..., ma..., sigma2``) nothing is
    estimated: the model is filtered with them.
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    label = f"ARIMA{order}{'+c' if constant else ''}"
    if params is None and order[0] == 0 and order[2] == 0:
        params = white_noise_mle(np.diff(logy, n=order[1]), constant)
    closed_form = params is not None
    try:
        with counter.catching(label) as caught:
            model = SARIMAX(logy, order=order, trend="c" if constant else "n")
            if params is not None:
                res = model.filter(np.asarray(params, dtype=float))
            else:
                res = model.fit(
                    start_params=_start_params(start, order[0], constant),
                    disp=False,
                    maxiter=maxiter,
                )
    except (ValueError, np.linalg.LinAlgError) as exc:
        logger.debug("%s failed: %s", label, exc)
        return None
    converged = closed_form or (
        bool(res.mle_retvals.get("converged", True))
        and not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    )
    if not converged or not np.isfinite(res.llf):
        logger.debug("%s did not converge", label)
        return None
    ssm = res.filter_results
    selection = np.array(ssm.selection[:, :, 0])
    state = {
        "design": np.array(ssm.design[:, :, 0]),
        "obs_intercept": np.array(ssm.obs_intercept[:, 0]),
        "obs_cov": np.array(ssm.obs_cov[:, :, 0]),
        "transition": np.array(ssm.transition[:, :, 0]),
        "state_intercept": np.array(ssm.state_intercept[:, 0]),
        "selected_state_cov": selection @ ssm.state_cov[:, :, 0] @ selection.T,
        "state": np.array(ssm.predicted_state[:, -1]),
        "state_cov": np.array(ssm.predicted_state_cov[:, :, -1]),
        "params": np.asarray(res.params, dtype=float),
    }
    return ExactFit(order, constant, float(res.aicc), True, state)


def state_space_forecast(state: dict[str, np.ndarray], h: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the 1..h-step forecasts from the last predicted state."""
    z, d, hcov = state["design"], state["obs_intercept"], state["obs_cov"]
    t, c, rqr = state["transition"], state["state_intercept"], state["selected_state_cov"]
    a, p = state["state"].copy(), state["state_cov"].copy()
    mean, var = np.empty(h), np.empty(h)
    for i in range(h):
        mean[i] = float((z @ a + d)[0])
        var[i] = float((z @ p @ z.T + hcov)[0, 0])
        a = t @ a + c
        p = t @ p @ t.T + rqr
    return mean, var


def extend_state(state: dict[str, np.ndarray], logy_new: np.ndarray) -> dict[str, np.ndarray]:
    """``state`` after filtering the observations ``logy_new`` that followed it (Kalman filter
    with the stored system matrices: prediction error, gain, update, then one-step prediction).

    Raises ``ValueError`` when the prediction-error variance is not positive and finite.
    """
    z, d, hcov = state["design"], state["obs_intercept"], state["obs_cov"]
    t, c, rqr = state["transition"], state["state_intercept"], state["selected_state_cov"]
    a, p = state["state"].copy(), state["state_cov"].copy()
    for value in np.asarray(logy_new, dtype=float):
        f = float((z @ p @ z.T + hcov)[0, 0])
        if not np.isfinite(f) or f <= 0:
            raise ValueError(f"prediction-error variance {f!r} is not positive")
        v = float(value - (z @ a + d)[0])
        pz = p @ z.T
        a = t @ (a + pz[:, 0] * (v / f)) + c
        p = t @ (p - pz @ pz.T / f) @ t.T + rqr
    return {**state, "state": a, "state_cov": p}
