"""AutoARIMA on log prices: unit-root tests for ``d``, a stepwise AICc search, one exact fit.

The procedure follows Hyndman & Khandakar (2008) with the *approximation* that R's
``forecast::auto.arima`` itself uses on long series:

1. ``d``: difference the log price while the KPSS test rejects stationarity at ``alpha``
   (``test="adf"``: while the ADF test cannot reject a unit root), up to ``max_d`` (default 1).
   Why not 2: log returns of crypto prices are stationary apart from volatility clustering, and
   the tests read bursts of volatility (and bubbles) in a 3-year window as a second unit root.
   A d = 2 model extrapolates the recent *trend* of returns and its variance grows like h³: on
   rolling 1,095-day ETH windows the KPSS rule picked d = 2 in 44 of 80 windows, and the 30-day
   95% upper bound reached 129x the last price (max_d=1: at most 2.8x, same coverage, lower
   MASE: 8.90 vs 11.63, naive 8.69). ``max_d=2`` remains available for series that really are I(2).
2. Order search on the differenced series ``w``: each candidate ARMA(p, q), with or without a
   constant (the mean when d = 0, the drift when d = 1; never when d = 2), is fitted by
   conditional sum of squares (CSS: ``scipy.signal.lfilter`` + Levenberg–Marquardt; ~1 ms) and
   scored by AICc on a common sample. Non-stationary or non-invertible fits are rejected. The
   search starts from (2,2), (0,0), (1,0), (0,1) and moves to the best neighbour (p±1, q±1,
   constant on/off) until nothing improves or ``max_models`` candidates were tried.
3. The ``refine`` best candidates are refitted by exact Gaussian maximum likelihood
   (statsmodels ``SARIMAX``, Kalman filter, CSS values as the starting point); the lowest
   exact AICc among those that converge wins. If none converges, the fallback ARIMA(0, d, 0) is
   used and reported (ARIMA(0, 1, 0), the random walk, when the search was at d = 0: failing to
   fit any stationary ARMA to a log-price level is evidence of a unit root). ARIMA(0, d, 0)
   (with or without a constant) is never optimised: its maximum-likelihood estimates have a
   closed form (the mean and variance of the differenced series), so the fallback, and a fixed
   ``order=(0, 1, 0)``, cannot fail to converge. (L-BFGS started at the optimum used to stop
   with "ABNORMAL_TERMINATION_IN_LNSRCH", which statsmodels reports as a convergence failure.)

Forecasts come from the state-space form of the chosen model: the saved state is just the
system matrices, the last predicted state and its covariance (a few kB), so a loaded model
forecasts exactly like the fitted one without statsmodels' results object. Intervals are normal
in log price and transformed back to prices.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from scipy.signal import lfilter

from pipeline.errors import ForecastError, UsageError
from pipeline.forecasters.base import Forecaster, lognormal_frame

logger = logging.getLogger(__name__)

MODEL_FILE = "arima.joblib"
#: Largest order accepted for a fixed ``order`` (keeps fits sane).
MAX_FIXED_ORDER = 10


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
class WarningCounter:
    """Counts warnings caught from statsmodels/scipy; each is logged at DEBUG."""

    total: int = 0
    by_category: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def catching(self, what: str) -> Iterator[list[warnings.WarningMessage]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
        for w in caught:
            name = w.category.__name__
            self.total += 1
            self.by_category[name] = self.by_category.get(name, 0) + 1
            logger.debug("%s: %s: %s", what, name, w.message)


def parse_order(value: str | Sequence[int] | None) -> tuple[int, int, int] | None:
    """``"1,1,0"`` or ``(1, 1, 0)`` -> ``(1, 1, 0)``, validated; ``None`` stays ``None``."""
    if value is None:
        return None
    parts: Sequence[Any] = value.split(",") if isinstance(value, str) else value
    try:
        order = tuple(int(str(part).strip()) for part in parts)
    except ValueError:
        raise UsageError(f"invalid ARIMA order {value!r}: use p,d,q like 1,1,0") from None
    if len(order) != 3 or min(order) < 0 or order[1] > 2 or max(order) > MAX_FIXED_ORDER:
        raise UsageError(
            f"invalid ARIMA order {value!r}: use p,d,q with 0 <= p, q <= {MAX_FIXED_ORDER}, "
            "0 <= d <= 2"
        )
    return order[0], order[1], order[2]


def kpss_lags(n: int) -> int:
    """Newey-West lags of R's ``tseries::kpss(lshort=TRUE)``, as ``forecast::ndiffs`` uses.

    statsmodels' data-dependent ``nlags="auto"`` picks many lags on persistent series, which
    costs the test its power: simulated ARIMA(1,1,0) series then often looked stationary.
    """
    return int(4 * (n / 100) ** 0.25)


def choose_d(
    x: np.ndarray, *, test: str, alpha: float, max_d: int, counter: WarningCounter
) -> tuple[int, list[dict[str, float]]]:
    """Number of differences that makes ``x`` stationary according to ``test``."""
    from statsmodels.tools.sm_exceptions import InterpolationWarning
    from statsmodels.tsa.stattools import adfuller, kpss

    report: list[dict[str, float]] = []
    d = 0
    while d < max_d:
        with counter.catching(f"{test} test"):
            # KPSS p-values are interpolated in a table bounded at 0.01 and 0.10; outside it the
            # bound is returned, which is all we need to compare with alpha.
            warnings.simplefilter("ignore", InterpolationWarning)
            if test == "kpss":
                res = kpss(x, regression="c", nlags=kpss_lags(x.size), result_object=True)
                needs_diff = res.pvalue < alpha
            else:
                res = adfuller(x, autolag="AIC", result_object=True)
                needs_diff = res.pvalue >= alpha
        report.append({"d": d, "statistic": float(res.statistic), "pvalue": float(res.pvalue)})
        if not needs_diff:
            break
        x = np.diff(x)
        d += 1
    return d, report


# -- CSS search -----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Candidate:
    aicc: float
    p: int
    q: int
    constant: bool
    params: tuple[float, ...] = ()  # mu, phi_1..p, theta_1..q, sigma2 (CSS estimates)


def _split(theta: np.ndarray, p: int, constant: bool) -> tuple[float, np.ndarray, np.ndarray]:
    c = int(constant)
    mu = float(theta[0]) if constant else 0.0
    return mu, theta[c : c + p], theta[c + p :]


def _css_residuals(theta: np.ndarray, w: np.ndarray, p: int, constant: bool, m: int) -> np.ndarray:
    mu, phi, ma = _split(theta, p, constant)
    return lfilter(np.r_[1.0, -phi], np.r_[1.0, ma], w - mu)[m:]


def _roots_ok(coefs: np.ndarray, sign: float) -> bool:
    """True when 1 + sign*(c1 z + ... ) has every root outside the unit circle (margin 1%)."""
    if coefs.size == 0 or not np.any(coefs):
        return True
    roots = np.polynomial.polynomial.polyroots(np.r_[1.0, sign * coefs])
    return bool(np.all(np.abs(roots) > 1.01))


def css_candidate(w: np.ndarray, p: int, q: int, constant: bool, m: int) -> Candidate:
    """Fit ARMA(p, q) (+ mean) to ``w`` by conditional least squares; score by AICc."""
    theta0 = np.zeros(int(constant) + p + q)
    if constant:
        theta0[0] = float(np.mean(w))
    if theta0.size:
        fit = least_squares(_css_residuals, theta0, args=(w, p, constant, m), method="lm")
        theta, resid = fit.x, fit.fun
    else:
        theta, resid = theta0, w[m:]
    n = resid.size
    sigma2 = float(resid @ resid) / n
    _, phi, ma = _split(theta, p, constant)
    k = theta.size + 1
    if not (np.isfinite(sigma2) and sigma2 > 0 and _roots_ok(phi, -1.0) and _roots_ok(ma, 1.0)):
        return Candidate(np.inf, p, q, constant)
    loglik = -0.5 * n * (np.log(2 * np.pi * sigma2) + 1.0)
    aicc = -2 * loglik + 2 * k + 2 * k * (k + 1) / max(n - k - 1, 1)
    return Candidate(float(aicc), p, q, constant, (*map(float, theta), sigma2))


def _neighbours(c: Candidate, allow_constant: bool) -> Iterator[tuple[int, int, bool]]:
    for dp, dq in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1)):
        yield c.p + dp, c.q + dq, c.constant
    if allow_constant:
        yield c.p, c.q, not c.constant


def stepwise_search(
    w: np.ndarray,
    *,
    allow_constant: bool,
    max_p: int,
    max_q: int,
    max_order: int,
    max_models: int,
) -> list[Candidate]:
    """Hyndman–Khandakar stepwise search by CSS AICc; every candidate tried, best first."""
    m = max_p  # condition every candidate on the same first observations: comparable AICc
    tried: dict[tuple[int, int, bool], Candidate] = {}

    def allowed(p: int, q: int, const: bool) -> bool:
        return (
            0 <= p <= max_p
            and 0 <= q <= max_q
            and p + q <= max_order
            and (allow_constant or not const)
            and (p, q, const) not in tried
        )

    def trial(p: int, q: int, const: bool) -> Candidate:
        cand = css_candidate(w, p, q, const, m)
        tried[(p, q, const)] = cand
        return cand

    starts = [(2, 2, True), (0, 0, True), (1, 0, True), (0, 1, True), (0, 0, False)]
    for p, q, const in starts:
        if allowed(p, q, const and allow_constant) and len(tried) < max_models:
            trial(p, q, const and allow_constant)
    best = min(tried.values())
    improved = True
    while improved and len(tried) < max_models:
        improved = False
        for p, q, const in _neighbours(best, allow_constant):
            if not allowed(p, q, const):
                continue
            cand = trial(p, q, const)
            if cand.aicc < best.aicc:
                best, improved = cand, True
                break
            if len(tried) >= max_models:
                break
    return sorted(tried.values())


# -- exact fit and state-space forecasts ---------------------------------------------------


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
    mu, phi, ma = _split(theta, p, constant)
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
) -> ExactFit | None:
    """Maximum-likelihood fit of one order; ``None`` when it fails or does not converge."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    label = f"ARIMA{order}{'+c' if constant else ''}"
    closed_form = order[0] == 0 and order[2] == 0
    try:
        with counter.catching(label) as caught:
            model = SARIMAX(logy, order=order, trend="c" if constant else "n")
            if closed_form:
                res = model.filter(white_noise_mle(np.diff(logy, n=order[1]), constant))
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


class AutoARIMA(Forecaster):
    """ARIMA on log prices with automatic (or fixed) order.

    ``max_d`` defaults to 1: a second difference of log crypto prices is never appropriate (see
    the module docstring), and it blew the 30-day bands up to 129x the price on ETH.
    """

    name: ClassVar[str] = "arima"
    min_points: ClassVar[int] = 30
    libraries: ClassVar[tuple[str, ...]] = ("statsmodels",)
    complexity: ClassVar[int] = 2

    def __init__(
        self,
        order: str | Sequence[int] | None = None,
        constant: bool | None = None,
        test: str = "kpss",
        alpha: float = 0.05,
        max_d: int = 1,
        max_p: int = 5,
        max_q: int = 5,
        max_order: int = 5,
        max_models: int = 30,
        refine: int = 2,
        maxiter: int = 50,
    ) -> None:
        fixed = parse_order(order)
        if test not in {"kpss", "adf"}:
            raise UsageError(f"arima: unknown unit-root test {test!r}: use kpss or adf")
        if max_models < 1 or refine < 1:
            raise UsageError("arima: max_models and refine must be >= 1")
        if isinstance(max_d, bool) or max_d not in (0, 1, 2):
            raise UsageError(f"arima: max_d must be 0, 1 or 2, got {max_d!r}")
        super().__init__(
            order=list(fixed) if fixed else None,
            constant=constant,
            test=test,
            alpha=alpha,
            max_d=max_d,
            max_p=max_p,
            max_q=max_q,
            max_order=max_order,
            max_models=max_models,
            refine=refine,
            maxiter=maxiter,
        )

    def fitted_params(self) -> dict[str, Any]:
        if not hasattr(self, "fit_info_"):
            return {}
        return dict(self.fit_info_)

    # -- fitting ----------------------------------------------------------------------------
    def _fit(self, y: pd.Series) -> None:
        with single_blas_thread():
            self._fit_log_prices(y)

    def _fit_log_prices(self, y: pd.Series) -> None:
        started = time.perf_counter()
        counter = WarningCounter()
        logy = np.log(y.to_numpy())
        fixed = parse_order(self.params["order"])
        if fixed is not None:
            d, tests = fixed[1], list[dict[str, float]]()
        else:
            d, tests = choose_d(
                logy,
                test=self.params["test"],
                alpha=self.params["alpha"],
                max_d=self.params["max_d"],
                counter=counter,
            )
        w = np.diff(logy, n=d)
        allow_constant = d <= 1
        constant = self.params["constant"]
        if constant is not None:
            allow_constant = allow_constant and bool(constant)
        ranked = self._candidates(w, fixed, allow_constant, constant, counter)
        n_css = len(ranked)

        chosen: ExactFit | None = None
        fallback = False
        exact_tried = 0
        shortlist = [c for c in ranked if np.isfinite(c.aicc)][: self.params["refine"]]
        if fixed is not None and not shortlist:
            # CSS found no stationary/invertible values: let maximum likelihood start afresh.
            shortlist = ranked[:1]
        for cand in shortlist:
            exact_tried += 1
            fit = fit_exact(
                logy,
                (cand.p, d, cand.q),
                cand.constant,
                start=cand if cand.params else None,
                maxiter=self.params["maxiter"],
                counter=counter,
            )
            if fit is not None and (chosen is None or fit.aicc < chosen.aicc):
                chosen = fit
        if chosen is None:
            fallback = True
            exact_tried += 1
            if fixed is None and d == 0:
                # No stationary ARMA fits the log-price level: that is itself evidence of a unit
                # root, and a constant-mean ARIMA(0,0,0) would pull every forecast back to the
                # window's average. The random walk is the fallback for prices.
                d, allow_constant = 1, False
            logger.warning(
                "%s: no candidate converged; using the fallback ARIMA(0,%d,0)", self.name, d
            )
            chosen = fit_exact(
                logy,
                (0, d, 0),
                allow_constant and d <= 1,
                start=None,
                maxiter=200,
                counter=counter,
            )
            if chosen is None:
                raise ForecastError(f"{self.name}: even the fallback ARIMA(0,{d},0) failed to fit")

        self.state_ = chosen.state
        p, _, q = chosen.order
        self.fit_info_ = {
            "order": [p, d, q],
            "constant": chosen.constant,
            "trend": ("mean" if d == 0 else "drift") if chosen.constant else "none",
            "aicc": round(chosen.aicc, 4),
            "selection": "fixed" if fixed else "stepwise",
            "d_tests": tests,
            "n_models": n_css + exact_tried,
            "n_warnings": counter.total,
            "fallback": fallback,
            "fit_seconds": round(time.perf_counter() - started, 3),
        }
        logger.debug(
            "%s: ARIMA(%d,%d,%d) trend=%s aicc=%.2f models=%d warnings=%s",
            self.name,
            p,
            d,
            q,
            self.fit_info_["trend"],
            chosen.aicc,
            self.fit_info_["n_models"],
            counter.by_category or 0,
        )

    def _candidates(
        self,
        w: np.ndarray,
        fixed: tuple[int, int, int] | None,
        allow_constant: bool,
        constant: bool | None,
        counter: WarningCounter,
    ) -> list[Candidate]:
        # Like auto.arima, keep the search within what a short series can identify.
        max_p = min(self.params["max_p"], w.size // 10)
        max_q = min(self.params["max_q"], w.size // 10)
        with counter.catching("CSS search"):
            if fixed is None:
                return stepwise_search(
                    w,
                    allow_constant=allow_constant,
                    max_p=max_p,
                    max_q=max_q,
                    max_order=self.params["max_order"],
                    max_models=self.params["max_models"],
                )
            p, _, q = fixed
            options = [True, False] if allow_constant and constant is None else [allow_constant]
            m = max(p, 1)
            return sorted(css_candidate(w, p, q, const, m) for const in options)

    # -- forecasting and persistence -------------------------------------------------------------
    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        mean_log, var_log = state_space_forecast(self.state_, h)
        return lognormal_frame(mean_log, np.sqrt(np.maximum(var_log, 0.0)), levels)

    def _save_state(self, folder: Path) -> list[str]:
        payload = {"state": self.state_, "fit_info": self.fit_info_, "params": self.params}
        joblib.dump(payload, folder / MODEL_FILE)
        return [MODEL_FILE]

    def _load_state(self, folder: Path) -> None:
        payload = joblib.load(folder / MODEL_FILE)
        self.state_ = payload["state"]
        self.fit_info_ = payload["fit_info"]
        self.params = payload["params"]
