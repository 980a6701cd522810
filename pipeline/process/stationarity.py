"""Stationarity report: ADF and KPSS on log price and log returns, and the differencing order.

ADF's null hypothesis is a unit root (reject -> stationary); KPSS's null is stationarity
(reject -> not stationary). Each part of the report says what each test concludes at ``alpha``
and ``stationary`` is true when both agree. The differencing order moves away from the usual
``d = 1`` of prices only when both tests agree:

* ``d = 0`` when log price is stationary by both tests,
* ``d = 2`` when log returns are non-stationary by both tests,
* else ``d = 1`` (log returns are stationary by at least one test). KPSS alone often rejects on
  long return series because of volatility clustering while ADF rejects a unit root with
  p < 1e-10; that is no reason to difference prices twice.

KPSS p-values come from a look-up table bounded to [0.01, 0.10]; outside it statsmodels warns
(``InterpolationWarning``) and returns the bound. We catch that one warning and record
``kpss_pvalue_bound: true`` instead of letting it reach the logs; any other warning passes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)
T = TypeVar("T")

ALPHA = 0.05
#: Tests use at most the last this many points, so they stay fast on long hourly series.
MAX_TEST_POINTS = 2000
#: Fewer points than this and the tests are skipped (``d`` is then ``None``).
MIN_TEST_POINTS = 20


def _single_threaded_blas() -> AbstractContextManager[Any]:
    """Limit BLAS to one thread while testing, when threadpoolctl is installed.

    ADF's lag search runs ~30 small regressions; a multi-threaded BLAS only adds overhead on
    them, and on our 2 shared cores it made the search 7-25x slower (measured: 0.06 s vs 1.5 s
    on 1,000 points under load; 0.2 s vs 1.5 s on 5,000 points when idle).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _quiet(expected: tuple[type[Warning], ...], call: Callable[[], T]) -> tuple[T, list[str]]:
    """Run ``call``; swallow (and return the names of) only the ``expected`` warnings."""
    with warnings.catch_warnings(record=True) as caught:
        for category in expected:
            warnings.simplefilter("always", category)
        value = call()
    seen = []
    for w in caught:
        if issubclass(w.category, expected):
            seen.append(w.category.__name__)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value, seen


def _test_one(x: np.ndarray, alpha: float) -> dict[str, Any]:
    """ADF and KPSS on one series; statsmodels is imported lazily (it takes ~1 s)."""
    from statsmodels.tools.sm_exceptions import InterpolationWarning, SingularMatrixWarning
    from statsmodels.tsa.stattools import adfuller, kpss

    result: dict[str, Any] = {"n": int(len(x)), "stationary": None}
    if len(x) < MIN_TEST_POINTS:
        result["skipped"] = f"too few points ({len(x)} < {MIN_TEST_POINTS})"
        return result
    if float(np.std(x)) == 0.0:
        result["skipped"] = "constant series"
        return result
    try:
        # A deterministic series (e.g. a straight line) makes ADF's regression rank-deficient.
        adf, adf_notes = _quiet(
            (SingularMatrixWarning,),
            lambda: adfuller(x, regression="c", autolag="AIC", result_object=True),
        )
        # Outside KPSS's p-value table statsmodels warns and returns the bound (0.01 or 0.1).
        kps, kpss_notes = _quiet(
            (InterpolationWarning,),
            lambda: kpss(x, regression="c", nlags="auto", result_object=True),
        )
    except (ValueError, np.linalg.LinAlgError) as exc:
        result["skipped"] = f"test failed: {exc}"
        return result
    result.update(
        adf_stat=float(adf.statistic),
        adf_pvalue=float(adf.pvalue),
        adf_lags=int(adf.lags),
        kpss_stat=float(kps.statistic),
        kpss_pvalue=float(kps.pvalue),
        kpss_pvalue_bound=bool(kpss_notes),
        kpss_lags=int(kps.lags),
        adf_stationary=bool(adf.pvalue < alpha),
        kpss_stationary=bool(kps.pvalue > alpha),
    )
    result["stationary"] = result["adf_stationary"] and result["kpss_stationary"]
    if adf_notes:
        result["note"] = "ADF regression was rank-deficient (a deterministic series?)"
    return result


def stationarity_report(
    price: pd.Series, *, max_points: int = MAX_TEST_POINTS, alpha: float = ALPHA
) -> dict[str, Any]:
    """Test ``log(price)`` and its first differences; return a JSON-ready report with ``d``.

    ``price`` should be an unbroken run (no missing values); missing values are dropped.
    Only the last ``max_points`` prices are tested.
    """
    clean = price.dropna().astype(float)
    clean = clean.iloc[-max_points:]
    log_price = np.log(clean.to_numpy())
    log_return = np.diff(log_price)
    report: dict[str, Any] = {
        "alpha": alpha,
        "max_points": max_points,
        "n_points": int(len(clean)),
        "first_ds": clean.index[0].isoformat() if len(clean) else None,
        "last_ds": clean.index[-1].isoformat() if len(clean) else None,
    }
    with _single_threaded_blas():
        report["log_price"] = _test_one(log_price, alpha)
        report["log_return"] = _test_one(log_return, alpha)
    report["d"] = choose_d(report["log_price"], report["log_return"])
    return report


def choose_d(log_price: dict[str, Any], log_return: dict[str, Any]) -> int | None:
    """The differencing order from the two parts of a report (``None`` if a part was skipped)."""
    if "skipped" in log_price or "skipped" in log_return:
        return None
    if log_price["adf_stationary"] and log_price["kpss_stationary"]:
        return 0
    if not log_return["adf_stationary"] and not log_return["kpss_stationary"]:
        return 2
    return 1
