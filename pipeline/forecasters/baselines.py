"""Baselines every other model must beat: the naive random walk and the random walk with drift.

Both work on log prices. With ``r`` the training log returns (standard deviation ``s``, mean ``c``,
``T`` of them), the h-step forecast of the log price is normal with

* Naive: mean ``log y_T``, standard deviation ``s * sqrt(h)``;
* Drift: mean ``log y_T + c * h``, standard deviation ``s * sqrt(h * (1 + h / T))``; the extra
  term is the variance of the estimated drift (Hyndman & Athanasopoulos, *Forecasting:
  Principles and Practice*, 3rd ed., section 5.5).

Intervals are transformed back to prices (log-normal); the point forecast is the median.

:meth:`~pipeline.forecasters.base.Forecaster.update` only moves the last price: ``s``, ``c``
and ``T`` stay those of the fit.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.errors import ForecastError
from pipeline.forecasters.base import Forecaster, lognormal_frame

logger = logging.getLogger(__name__)

STATE_FILE = "baseline.json"


class Naive(Forecaster):
    """Random walk on log prices: tomorrow's price is today's."""

    name: ClassVar[str] = "naive"
    min_points: ClassVar[int] = 3
    complexity: ClassVar[int] = 0
    updatable: ClassVar[bool] = True
    #: Whether the forecast mean moves with the average log return.
    _with_drift: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()

    def fitted_params(self) -> dict[str, Any]:
        if not hasattr(self, "sigma_"):
            return {}
        out = {"sigma_log_return": self.sigma_, "n_returns": self.n_returns_}
        if self._with_drift:
            out["drift_log_return"] = self.drift_
        return out

    def _fit(self, y: pd.Series) -> None:
        log_returns = np.diff(np.log(y.to_numpy()))
        self.n_returns_ = int(log_returns.size)
        self.sigma_ = float(np.std(log_returns, ddof=1))
        self.drift_ = float(np.mean(log_returns)) if self._with_drift else 0.0
        if not np.isfinite(self.sigma_):
            raise ForecastError(f"{self.name}: cannot estimate the spread of log returns")
        logger.debug("%s fitted: sigma=%.6g drift=%.6g", self.name, self.sigma_, self.drift_)

    def _update(self, y_new: pd.Series) -> None:
        """Nothing to do: the forecast starts from the new last price, which the base sets."""

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        steps = np.arange(1, h + 1, dtype=float)
        mean_log = np.log(self.last_price_) + self.drift_ * steps
        if self._with_drift:
            sd_log = self.sigma_ * np.sqrt(steps * (1.0 + steps / self.n_returns_))
        else:
            sd_log = self.sigma_ * np.sqrt(steps)
        return lognormal_frame(mean_log, sd_log, levels)

    def _save_state(self, folder: Path) -> list[str]:
        state = {"sigma": self.sigma_, "drift": self.drift_, "n_returns": self.n_returns_}
        (folder / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        return [STATE_FILE]

    def _load_state(self, folder: Path) -> None:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        self.sigma_ = float(state["sigma"])
        self.drift_ = float(state["drift"])
        self.n_returns_ = int(state["n_returns"])


class Drift(Naive):
    """Random walk with drift on log prices: the average log return continues."""

    name: ClassVar[str] = "drift"
    complexity: ClassVar[int] = 1
    _with_drift: ClassVar[bool] = True
