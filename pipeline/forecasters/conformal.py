"""Conformal calibration of any forecaster's intervals from its own rolling backtest.

``Conformal(base="garch", method="split")`` fits the base model on the whole training series and,
to calibrate it, refits it at ``calibration_origins`` origins spread over the later part of the
*same* training series (each fit sees only the data before its origin: no look-ahead) and
forecasts ``horizon`` steps from each: the caller gives ``horizon`` (the horizon it will serve);
without it the frequency table's default horizon for the series' step is used. For every
origin, step ``k`` and level ``L`` the *normalised log error* is

    s = (log actual - log mean) / (log upper_L - log mean)   when the actual is above the mean,
    s = (log mean - log actual) / (log mean - log lower_L)   otherwise,

so ``s <= 1`` exactly when the base interval covered the actual. The calibrated interval scales
both half-widths (in log space) by a factor ``f[k, L]``:

* ``method="split"`` (split conformal): ``f`` is the ``ceil((n + 1) L / 100)``-th smallest of the
  ``n`` scores, which gives coverage >= L% for exchangeable errors;
* ``method="adaptive"`` (adaptive conformal inference, Gibbs & Candès 2021): the level is updated
  along the origins in time order, ``a <- a + gamma (1 - L/100 - miss)``, so a run of recent
  misses widens the final interval and a run of hits narrows it; ``f`` is the score quantile at
  the final level.

The scores of each step are pooled with those of ``pool_steps`` neighbouring steps on each side
(the normalised errors of nearby steps are alike; a few dozen origins alone give a noisy 95%
quantile, and noisy factors cost width). Defaults (100 origins over the last 75% of the window,
``pool_steps=5``) were chosen on the shared BTC/ETH data: with 40 origins over the last half
and ``pool_steps=2`` the coverage was as close to nominal but the bands ~5-10% wider.
Steps beyond the calibrated horizon use the last step's factors. The origins, raw coverage,
scores and factors are reported by :meth:`Conformal.fitted_params`, so the artifact metadata
records the whole calibration.

Refitting: by default (``reuse_fitted=True``) each calibration model reuses what the full-window
fit chose, so no model search or optimisation is repeated 40 times: a base that has a
``calibration_params()`` method says how (the GARCH models keep their fitted parameters and only
re-run the variance recursion on the data before each origin); otherwise the fitted values its
constructor accepts are passed on (e.g. an ARIMA order, whose coefficients are re-estimated).
This uses parameters estimated on the whole training window, a mild look-ahead *within* the
training data only; ``reuse_fitted=False`` refits everything from scratch at every origin.

Updating (:meth:`~pipeline.forecasters.base.Forecaster.update`, when the base model can): the
base model moves to the new origin; split-conformal factors are carried over unchanged, and
adaptive conformal feeds the errors of the forecasts it issued since the fit into its level
recursion as they mature (:mod:`pipeline.forecasters.conformal_online`).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.errors import ForecastError, UsageError
from pipeline.forecasters import forecaster_class
from pipeline.forecasters.base import DEFAULT_LEVELS, Forecaster
from pipeline.forecasters.composite import (
    RollingForecasts,
    calibration_origins,
    default_horizon,
    load_member,
    refit_params,
    rolling_forecasts,
    save_member,
)
from pipeline.forecasters.conformal_online import Pending, absorb, walk
from pipeline.forecasters.conformal_scores import (
    aci_alphas,
    aci_factors,
    adaptive_factors,
    conformal_quantile,
    normalised_scores,
    pooled,
    raw_coverage,
    read_scores,
    split_factors,
    stored_scores,
)

logger = logging.getLogger(__name__)

#: The score maths lives in :mod:`pipeline.forecasters.conformal_scores`; its names are
#: re-exported here.
__all__ = [
    "AdaptiveConformalGarch",
    "AdaptiveConformalNaive",
    "Conformal",
    "ConformalGarch",
    "ConformalNaive",
    "adaptive_factors",
    "conformal_quantile",
    "normalised_scores",
    "pooled",
    "split_factors",
]

STATE_FILE = "conformal.json"
BASE_PREFIX = "base__"
#: Fewest distinct calibration origins accepted.
MIN_ORIGINS = 10


class Conformal(Forecaster):
    """Any registered forecaster with conformally calibrated 80%/95% intervals."""

    name: ClassVar[str] = "conformal"
    min_points: ClassVar[int] = 60
    libraries: ClassVar[tuple[str, ...]] = ()
    complexity: ClassVar[int] = 3
    #: True when the base model is (``update`` refuses a base that cannot update).
    updatable: ClassVar[bool] = True
    default_base: ClassVar[str] = "naive"
    default_method: ClassVar[str] = "split"

    def __init__(
        self,
        *,
        base: str | None = None,
        base_params: dict[str, Any] | None = None,
        method: str | None = None,
        calibration_origins: int = 100,
        horizon: int | None = None,
        levels: Sequence[int] = DEFAULT_LEVELS,
        min_train_fraction: float = 0.25,
        pool_steps: int = 5,
        gamma: float = 0.01,
        warmup: int = 10,
        reuse_fitted: bool = True,
    ) -> None:
        base = base or self.default_base
        method = method or self.default_method
        if method not in ("split", "adaptive"):
            raise UsageError(f"{self.name}: method must be 'split' or 'adaptive', got {method!r}")
        if base in ("conformal",) or base.startswith("conformal_"):
            raise UsageError(f"{self.name}: the base model cannot itself be conformal ({base})")
        if calibration_origins < MIN_ORIGINS:
            raise UsageError(
                f"{self.name}: calibration_origins must be >= {MIN_ORIGINS}, "
                f"got {calibration_origins}"
            )
        if not 0.1 <= min_train_fraction < 1:
            raise UsageError(f"{self.name}: min_train_fraction must be in [0.1, 1)")
        if horizon is not None and (isinstance(horizon, bool) or int(horizon) < 1):
            raise UsageError(f"{self.name}: horizon must be an integer >= 1, got {horizon!r}")
        super().__init__(
            base=base,
            base_params=dict(base_params or {}),
            method=method,
            calibration_origins=int(calibration_origins),
            horizon=None if horizon is None else int(horizon),
            levels=sorted(int(lv) for lv in levels),
            min_train_fraction=float(min_train_fraction),
            pool_steps=int(pool_steps),
            gamma=float(gamma),
            warmup=int(warmup),
            reuse_fitted=bool(reuse_fitted),
        )
        self.base_cls_ = forecaster_class(base)

    # -- fitting ------------------------------------------------------------------------------
    def _fit(self, y: pd.Series) -> None:
        p = self.params
        self.base_ = self.base_cls_(**p["base_params"]).fit(y)
        horizon = p["horizon"] or default_horizon(self.step_)
        n = len(y)
        min_train = max(self.base_cls_.min_points, math.ceil(n * p["min_train_fraction"]))
        origins = calibration_origins(n, min_train, horizon, p["calibration_origins"])
        if len(origins) < min(MIN_ORIGINS, p["calibration_origins"]):
            needed = max(
                self.base_cls_.min_points + horizon + MIN_ORIGINS - 1,
                math.ceil((horizon + MIN_ORIGINS) / (1 - p["min_train_fraction"])),
            )
            raise ForecastError(
                f"{self.name}: series too short ({n} points) to calibrate {horizon}-step "
                f"intervals from {MIN_ORIGINS} origins; give at least {needed} points "
                "or a smaller horizon"
            )
        cal_params = dict(p["base_params"])
        if p["reuse_fitted"]:
            cal_params = {**cal_params, **refit_params(self.base_cls_, self.base_)}

        def factory(train: pd.Series) -> Forecaster:
            return self.base_cls_(**cal_params).fit(train)

        rf = rolling_forecasts(factory, y, origins, horizon, p["levels"])
        self.calibration_ = self._calibrate(rf, horizon)
        self.pending_: list[Pending] = []

    def _calibrate(self, rf: RollingForecasts, horizon: int) -> dict[str, Any]:
        p = self.params
        out: dict[str, Any] = {
            "method": p["method"],
            "horizon": horizon,
            "n_origins": len(rf.origins),
            "origins": [ts.isoformat() for ts in rf.origins],
            "factors": {},
            "effective_level": {},
            "raw_coverage": {},
            "scores": {},
        }
        if p["method"] == "adaptive":
            out["alpha"] = {}
        for level in p["levels"]:
            scores = normalised_scores(rf, level)
            key = str(level)
            if p["method"] == "split":
                factors, used = split_factors(scores, level, p["pool_steps"])
            else:
                warmup = min(p["warmup"], len(rf.origins) - 1)
                start = np.full(scores.shape[1], 1.0 - level / 100.0)
                alphas = aci_alphas(scores, level, p["pool_steps"], p["gamma"], warmup, start)
                factors, used = aci_factors(scores, alphas, p["pool_steps"])
                out["alpha"][key] = [float(a) for a in alphas]
            out["factors"][key] = [float(f) for f in factors]
            out["effective_level"][key] = [round(float(u), 6) for u in used]
            out["raw_coverage"][key] = raw_coverage(scores)
            out["scores"][key] = stored_scores(scores)
            logger.debug(
                "%s: level %s raw coverage %.3f, factors %.3f..%.3f",
                self.name,
                level,
                float(np.nanmean(np.where(np.isfinite(scores), scores <= 1, np.nan))),
                float(factors.min()),
                float(factors.max()),
            )
        return out

    def fitted_params(self) -> dict[str, Any]:
        if not hasattr(self, "calibration_"):
            return {}
        return {"base_fitted": self.base_.fitted_params(), "calibration": self.calibration_}

    def shape_level(self, level: int) -> int:
        """The calibrated level whose base interval gives the shape of a ``level`` interval."""
        calibrated = [int(k) for k in self.calibration_["factors"]]
        return min(calibrated, key=lambda c: (abs(c - level), -c))

    def factors(self, level: int, h: int) -> np.ndarray:
        """Factors for steps 1..h, applied to the base's ``shape_level(level)`` interval.

        For a calibrated level they are the stored ones. Any other level is calibrated on the
        fly from the stored scores of the nearest calibrated level (the conformal quantile at
        the requested level of those scores), so every level in (0, 100) is supported.
        Steps beyond the calibrated horizon repeat the last calibrated step's factor.
        """
        cal = self.calibration_
        if str(level) in cal["factors"]:
            f = np.asarray(cal["factors"][str(level)], dtype=float)
        else:
            scores = read_scores(cal["scores"][str(self.shape_level(level))])
            p = self.params
            if p["method"] == "split":
                f, _ = split_factors(scores, level, p["pool_steps"])
            else:
                warmup = min(p["warmup"], scores.shape[0] - 1)
                f, _ = adaptive_factors(scores, level, p["pool_steps"], p["gamma"], warmup)
        if h > f.size:
            f = np.concatenate([f, np.full(h - f.size, f[-1])])
        return f[:h]

    def _update(self, y_new: pd.Series) -> None:
        if not self.base_.updatable:
            raise ForecastError(
                f"{self.name}: cannot update without refitting (its base model "
                f"{self.base_.name} cannot)"
            )
        p = self.params
        base = copy.deepcopy(self.base_)
        if p["method"] == "split":
            self.base_ = base.update(y_new)
            return
        cal = self.calibration_
        self.pending_, matured = walk(base, y_new, self.pending_, cal["horizon"], p["levels"])
        self.base_ = base
        self.calibration_ = absorb(
            cal,
            matured,
            levels=p["levels"],
            pool_steps=p["pool_steps"],
            gamma=p["gamma"],
            warmup=p["warmup"],
        )

    # -- forecasting ----------------------------------------------------------------------------
    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        shapes = {level: self.shape_level(level) for level in levels}
        fc = self.base_.predict(h, sorted(set(shapes.values())))
        mean = np.log(fc["mean"].to_numpy())
        out: dict[str, np.ndarray] = {"mean": fc["mean"].to_numpy()}
        for level in levels:
            f = self.factors(level, h)
            lo = np.log(fc[f"lower_{shapes[level]}"].to_numpy())
            hi = np.log(fc[f"upper_{shapes[level]}"].to_numpy())
            out[f"lower_{level}"] = np.exp(mean - f * (mean - lo))
            out[f"upper_{level}"] = np.exp(mean + f * (hi - mean))
        return pd.DataFrame(out)

    # -- persistence ----------------------------------------------------------------------------
    def _save_state(self, folder: Path) -> list[str]:
        names = save_member(self.base_, folder, BASE_PREFIX)
        state = {
            "base_files": [n.removeprefix(BASE_PREFIX) for n in names],
            "calibration": self.calibration_,
            "pending": self.pending_,
        }
        (folder / STATE_FILE).write_text(json.dumps(state) + "\n", encoding="utf-8")
        return [*names, STATE_FILE]

    def _load_state(self, folder: Path) -> None:
        try:
            state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            self.calibration_ = state["calibration"]
            self.pending_ = list(state.get("pending", []))
            files = list(state["base_files"])
        except (OSError, ValueError, KeyError) as exc:
            raise ForecastError(
                f"{folder / STATE_FILE}: unreadable conformal state: {exc}"
            ) from exc
        self.base_ = load_member(
            self.base_cls_, folder, BASE_PREFIX, files, self.params["base_params"]
        )


class ConformalNaive(Conformal):
    """Naive random walk, split-conformal intervals."""

    name: ClassVar[str] = "conformal_naive"
    complexity: ClassVar[int] = 1
    default_base: ClassVar[str] = "naive"


class ConformalGarch(Conformal):
    """Random walk + GARCH(1,1)-t spread, split-conformal intervals."""

    name: ClassVar[str] = "conformal_garch"
    libraries: ClassVar[tuple[str, ...]] = ("arch",)
    complexity: ClassVar[int] = 3
    default_base: ClassVar[str] = "garch"


class AdaptiveConformalNaive(Conformal):
    """Naive random walk, adaptive-conformal (ACI) intervals."""

    name: ClassVar[str] = "aci_naive"
    complexity: ClassVar[int] = 1
    default_base: ClassVar[str] = "naive"
    default_method: ClassVar[str] = "adaptive"


class AdaptiveConformalGarch(Conformal):
    """Random walk + GARCH(1,1)-t spread, adaptive-conformal (ACI) intervals."""

    name: ClassVar[str] = "aci_garch"
    libraries: ClassVar[tuple[str, ...]] = ("arch",)
    complexity: ClassVar[int] = 3
    default_base: ClassVar[str] = "garch"
    default_method: ClassVar[str] = "adaptive"
