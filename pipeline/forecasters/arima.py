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

Where each step lives: :mod:`~pipeline.forecasters.arima_search` (choosing ``d``, the CSS
stepwise search), :mod:`~pipeline.forecasters.arima_state_space` (the exact fit, the closed-form
ARIMA(0, d, 0), the state-space forecast) and this module (the :class:`AutoARIMA` forecaster that
runs them, its fallback and its saved state). ``coefficients`` (with a fixed ``order`` and
``constant``) skips estimation: the model is only filtered with them. ``update`` Kalman-filters
the stored state on through the new log prices with the fitted coefficients.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
import pandas as pd

from pipeline.errors import ForecastError, UsageError
from pipeline.forecasters.arima_search import (
    Candidate,
    WarningCounter,
    choose_d,
    css_candidate,
    stepwise_search,
)
from pipeline.forecasters.arima_state_space import (
    ExactFit,
    extend_state,
    fit_exact,
    single_blas_thread,
    state_space_forecast,
)
from pipeline.forecasters.base import Forecaster, lognormal_frame

logger = logging.getLogger(__name__)

MODEL_FILE = "arima.joblib"
#: Largest order accepted for a fixed ``order`` (keeps fits sane).
MAX_FIXED_ORDER = 10


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


class AutoARIMA(Forecaster):
    """ARIMA on log prices with automatic (or fixed) order.

    ``max_d`` defaults to 1: a second difference of log crypto prices is never appropriate (see
    the module docstring), and it blew the 30-day bands up to 129x the price on ETH.
    """

    name: ClassVar[str] = "arima"
    min_points: ClassVar[int] = 30
    libraries: ClassVar[tuple[str, ...]] = ("statsmodels",)
    complexity: ClassVar[int] = 2
    updatable: ClassVar[bool] = True

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
        coefficients: Sequence[float] | None = None,
    ) -> None:
        fixed = parse_order(order)
        if coefficients is not None and (fixed is None or constant is None):
            raise UsageError("arima: fixed coefficients need a fixed order and constant")
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
            coefficients=None if coefficients is None else [float(v) for v in coefficients],
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
        if fixed is not None and self.params.get("coefficients") is not None:
            self._filter_fixed(logy, fixed, counter, started)
            return
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

    def _filter_fixed(
        self,
        logy: np.ndarray,
        order: tuple[int, int, int],
        counter: WarningCounter,
        started: float,
    ) -> None:
        """Fit with the given order, constant and coefficients: the Kalman filter only."""
        constant = bool(self.params["constant"])
        coefficients = np.asarray(self.params["coefficients"], dtype=float)
        expected = int(constant) + order[0] + order[2] + 1
        fit = None
        if coefficients.size == expected:
            fit = fit_exact(
                logy, order, constant, start=None, maxiter=0, counter=counter, params=coefficients
            )
        if fit is None:
            raise ForecastError(
                f"{self.name}: ARIMA{order} cannot be filtered with coefficients "
                f"{coefficients.tolist()} (expected [intercept,] ar, ma, sigma2)"
            )
        self.state_ = fit.state
        self.fit_info_ = {
            "order": list(order),
            "constant": constant,
            "trend": ("mean" if order[1] == 0 else "drift") if constant else "none",
            "aicc": round(fit.aicc, 4),
            "selection": "fixed_coefficients",
            "d_tests": [],
            "n_models": 1,
            "n_warnings": counter.total,
            "fallback": False,
            "fit_seconds": round(time.perf_counter() - started, 3),
        }

    def _update(self, y_new: pd.Series) -> None:
        try:
            self.state_ = extend_state(self.state_, np.log(y_new.to_numpy()))
        except ValueError as exc:
            raise ForecastError(f"{self.name}: cannot filter the new data: {exc}") from exc

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
