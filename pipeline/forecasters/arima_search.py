"""Choosing an ARIMA model for AutoARIMA: the number of differences and the stepwise search.

* :func:`choose_d`: difference the log price while the KPSS test rejects stationarity (or, with
  ``test="adf"``, while the ADF test cannot reject a unit root), up to ``max_d``.
* :func:`stepwise_search`: the Hyndman & Khandakar (2008) stepwise search over ARMA(p, q), with
  or without a constant, on the differenced series. Each candidate is fitted by conditional sum
  of squares (CSS: ``scipy.signal.lfilter`` + Levenberg-Marquardt; ~1 ms) and scored by AICc on
  a common sample; non-stationary or non-invertible fits score ``inf``.

:class:`WarningCounter` counts (and logs at DEBUG) the warnings statsmodels and scipy emit
along the way, so the fit reports how noisy it was. See :mod:`pipeline.forecasters.arima` for
the whole procedure and why ``max_d`` defaults to 1.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True, order=True)
class Candidate:
    aicc: float
    p: int
    q: int
    constant: bool
    params: tuple[float, ...] = ()  # mu, phi_1..p, theta_1..q, sigma2 (CSS estimates)


def split_params(theta: np.ndarray, p: int, constant: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """``(mu, phi, theta)`` from a CSS parameter vector ``[mu,] phi_1..p, theta_1..q``."""
    c = int(constant)
    mu = float(theta[0]) if constant else 0.0
    return mu, theta[c : c + p], theta[c + p :]


def _css_residuals(theta: np.ndarray, w: np.ndarray, p: int, constant: bool, m: int) -> np.ndarray:
    mu, phi, ma = split_params(theta, p, constant)
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
    _, phi, ma = split_params(theta, p, constant)
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
