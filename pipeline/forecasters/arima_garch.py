"""ARIMA mean with GARCH(1,1)-t errors (registry name ``arima_garch``).

Two stages, as is usual for ARIMA-GARCH in practice:

1. :class:`~pipeline.forecasters.arima.AutoARIMA` chooses and fits the ARIMA model of the log
   price (``max_d=1`` unless ``arima_params`` overrides it); its forecast gives the *centre*.
2. The one-step residuals of that ARIMA (recomputed from its fitted coefficients by the
   conditional recursion, first ``p`` dropped) get a GARCH(1,1) model with Student-t
   innovations (``arch``), which gives the *spread*.

The k-step forecast error of the log price is ``sum_{j<k} psi_j e_{T+k-j}``, where ``psi`` are
the MA(inf) weights of the ARIMA model (integration included) and ``e`` the GARCH shocks. Its
quantiles come from simulated GARCH shock paths pushed through the ``psi`` weights (fixed seed,
antithetic shocks); step 1 uses the exact Student-t quantile.

``arima_params`` with ``order``, ``constant`` and ``coefficients`` and ``fixed_params`` (the
GARCH parameters of :data:`~pipeline.forecasters.garch.FIXABLE`) fix both stages: nothing is
estimated, the filters only run. :meth:`~pipeline.forecasters.base.Forecaster.update` does the
same through the new prices: the ARIMA state is Kalman-filtered on, the residual recursion is
continued from the stored tail (last log prices and residuals), and the GARCH variance
recursion is run through the new residuals.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd
from scipy.signal import lfilter, lfiltic

from pipeline.errors import ForecastError, UsageError
from pipeline.forecasters.arima import AutoARIMA
from pipeline.forecasters.arima_state_space import state_space_forecast
from pipeline.forecasters.base import Forecaster
from pipeline.forecasters.composite import load_member, save_member
from pipeline.forecasters.garch import (
    FIXABLE,
    GarchParams,
    choose_scale,
    extend_garch,
    filter_garch,
    fit_garch,
    quantile_paths,
    simulate_shocks,
)

logger = logging.getLogger(__name__)

STATE_FILE = "arima_garch.json"
#: Largest differencing order searched unless ``arima_params`` says otherwise.
DEFAULT_MAX_D = 1
ARIMA_PREFIX = "arima__"


def split_sarimax_params(
    params: np.ndarray, p: int, q: int, constant: bool
) -> tuple[float, np.ndarray, np.ndarray]:
    """``(intercept, ar, ma)`` from SARIMAX parameters ``[c], ar.L1.., ma.L1.., sigma2``."""
    i = 1 if constant else 0
    c = float(params[0]) if constant else 0.0
    return c, np.asarray(params[i : i + p], float), np.asarray(params[i + p : i + p + q], float)


def arma_residuals(w: np.ndarray, c: float, ar: np.ndarray, ma: np.ndarray) -> np.ndarray:
    """Conditional one-step residuals of ``w_t = c + sum ar_i w_{t-i} + e_t + sum ma_j e_{t-j}``.

    The first ``len(ar)`` values (no complete AR history) are dropped; pre-sample shocks are 0.
    """
    p = ar.size
    u = w[p:] - c - sum(ar[i] * w[p - 1 - i : w.size - 1 - i] for i in range(p))
    return np.asarray(lfilter([1.0], np.r_[1.0, ma], u), dtype=float)


def continue_residuals(
    w: np.ndarray, resid: np.ndarray, c: float, ar: np.ndarray, ma: np.ndarray
) -> np.ndarray:
    """Residuals of the values ``w[ar.size:]`` given the ``ar.size`` values of ``w`` before
    them and the last ``ma.size`` residuals ``resid`` (oldest first): :func:`arma_residuals`
    carried on past the end of the series it was run on."""
    p = ar.size
    u = w[p:] - c - sum(ar[i] * w[p - 1 - i : w.size - 1 - i] for i in range(p))
    if ma.size == 0:
        return np.asarray(u, dtype=float)
    zi = lfiltic([1.0], np.r_[1.0, ma], resid[::-1])
    out, _ = lfilter([1.0], np.r_[1.0, ma], u, zi=zi)
    return np.asarray(out, dtype=float)


def psi_weights(ar: np.ndarray, ma: np.ndarray, d: int, h: int) -> np.ndarray:
    """First ``h`` MA(inf) weights of ARIMA(p, d, q) (``psi_0 = 1``), integration included."""
    psi = np.zeros(h)
    psi[0] = 1.0
    for j in range(1, h):
        value = ma[j - 1] if j - 1 < ma.size else 0.0
        for i in range(1, min(j, ar.size) + 1):
            value += ar[i - 1] * psi[j - i]
        psi[j] = value
    for _ in range(d):
        psi = np.cumsum(psi)
    return psi


class ArimaGarch(Forecaster):
    """AutoARIMA centre, GARCH(1,1)-t spread of its residuals."""

    name: ClassVar[str] = "arima_garch"
    min_points: ClassVar[int] = 100
    libraries: ClassVar[tuple[str, ...]] = ("statsmodels", "arch")
    complexity: ClassVar[int] = 3
    updatable: ClassVar[bool] = True

    def __init__(
        self,
        *,
        arima_params: dict[str, Any] | None = None,
        simulations: int = 4000,
        seed: int = 0,
        fixed_params: dict[str, float] | None = None,
    ) -> None:
        # Log prices of crypto are I(1); a second difference (which the KPSS test picks on
        # some ETH bull-run windows) makes psi-weighted errors grow without bound: cap d at 1.
        merged = {"max_d": DEFAULT_MAX_D, **(arima_params or {})}
        if fixed_params is not None:
            missing = set(FIXABLE) - set(fixed_params)
            if missing:
                raise UsageError(f"{self.name}: fixed_params lacks {', '.join(sorted(missing))}")
            fixed_params = {k: float(fixed_params[k]) for k in FIXABLE}
        super().__init__(
            arima_params=merged,
            simulations=int(simulations),
            seed=int(seed),
            fixed_params=fixed_params,
        )

    # -- fitting ------------------------------------------------------------------------------
    def _fit(self, y: pd.Series) -> None:
        self.arima_ = AutoARIMA(**self.params["arima_params"]).fit(y)
        log_y = np.log(y.to_numpy())
        resid = self.residuals(log_y)
        if resid.size < 50:
            raise ForecastError(f"{self.name}: only {resid.size} ARIMA residuals; need >= 50")
        self._keep_tail(log_y, resid)
        fixed = self.params.get("fixed_params")
        if fixed is not None:
            self.garch_ = filter_garch(resid, fixed)
            return
        scale = choose_scale(resid)
        self.garch_ = fit_garch(
            resid * scale, scale=scale, drift=False, asymmetric=False, name=self.name
        )

    def _keep_tail(self, log_y: np.ndarray, resid: np.ndarray) -> None:
        """Keep what continuing the residual recursion needs: the last ``d + p`` log prices
        and the last ``q`` residuals."""
        d, _, ar, ma = self._arma()
        self.tail_log_y_ = [float(v) for v in log_y[log_y.size - d - ar.size :]]
        self.tail_resid_ = [float(v) for v in resid[resid.size - ma.size :]] if ma.size else []

    def _update(self, y_new: pd.Series) -> None:
        if not hasattr(self, "tail_log_y_"):
            raise ForecastError(
                f"{self.name}: cannot update without refitting (saved before updates were "
                "supported)"
            )
        d, c, ar, ma = self._arma()
        log_new = np.log(y_new.to_numpy())
        log_y = np.r_[self.tail_log_y_, log_new]
        new_resid = continue_residuals(
            np.diff(log_y, n=d), np.asarray(self.tail_resid_, float), c, ar, ma
        )
        arima = copy.deepcopy(self.arima_)
        arima.update(y_new)
        self.arima_ = arima
        self.garch_ = extend_garch(self.garch_, new_resid)
        self._keep_tail(log_y, np.r_[self.tail_resid_, new_resid])

    def _arma(self) -> tuple[int, float, np.ndarray, np.ndarray]:
        info = self.arima_.fitted_params()
        p, d, q = (int(v) for v in info["order"])
        c, ar, ma = split_sarimax_params(
            np.asarray(self.arima_.state_["params"], float), p, q, bool(info["constant"])
        )
        return d, c, ar, ma

    def residuals(self, log_y: np.ndarray) -> np.ndarray:
        """One-step residuals of the fitted ARIMA on ``log_y`` (log units)."""
        d, c, ar, ma = self._arma()
        return arma_residuals(np.diff(log_y, n=d), c, ar, ma)

    def fitted_params(self) -> dict[str, Any]:
        if not hasattr(self, "garch_"):
            return {}
        return {
            "arima": self.arima_.fitted_params(),
            "garch": {**asdict(self.garch_), "persistence": self.garch_.persistence},
        }

    # -- forecasting ----------------------------------------------------------------------------
    def log_quantiles(self, h: int, levels: list[int]) -> dict[str, np.ndarray]:
        """ARIMA centre and GARCH-driven bounds of the log price for steps 1..h."""
        mean_log, _ = state_space_forecast(self.arima_.state_, h)
        d, _, ar, ma = self._arma()
        psi = psi_weights(ar, ma, d, h)
        g = self.garch_
        shocks = simulate_shocks(g, h, self.params["simulations"], self.params["seed"])
        # err[:, k] = sum_j psi_j shocks[:, k - j]: a lower-triangular Toeplitz product.
        idx = np.subtract.outer(np.arange(h), np.arange(h))
        toeplitz = np.where(idx >= 0, psi[np.clip(idx, 0, None)], 0.0)
        errors = shocks @ toeplitz.T
        centre = mean_log * g.scale
        out = quantile_paths(centre, errors, math.sqrt(g.next_variance()), g, levels)
        return {k: v / g.scale for k, v in out.items()}

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        return pd.DataFrame({k: np.exp(v) for k, v in self.log_quantiles(h, levels).items()})

    # -- persistence ----------------------------------------------------------------------------
    def _save_state(self, folder: Path) -> list[str]:
        names = save_member(self.arima_, folder, ARIMA_PREFIX)
        state = {
            "garch": asdict(self.garch_),
            "arima_files": [n.removeprefix(ARIMA_PREFIX) for n in names],
            "tail": {"log_y": self.tail_log_y_, "resid": self.tail_resid_},
        }
        (folder / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        return [*names, STATE_FILE]

    def _load_state(self, folder: Path) -> None:
        try:
            state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            self.garch_ = GarchParams(**state["garch"])
            files = list(state["arima_files"])
            if "tail" in state:  # absent in models saved before updates were supported
                self.tail_log_y_ = [float(v) for v in state["tail"]["log_y"]]
                self.tail_resid_ = [float(v) for v in state["tail"]["resid"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ForecastError(f"{folder / STATE_FILE}: unreadable state: {exc}") from exc
        arima = load_member(AutoARIMA, folder, ARIMA_PREFIX, files, self.params["arima_params"])
        self.arima_ = cast(AutoARIMA, arima)
