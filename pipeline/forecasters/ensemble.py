"""Forecast combination: several registered forecasters, one forecast (registry name ``ensemble``).

Every member is fitted on the same series. The combined forecast works column by column in log
price (``mean``, ``lower_L``, ``upper_L``):

* ``combine="median"`` (default): the median across members of each column;
* ``combine="mean"``: the equal-weight average;
* ``combine="inverse_mae"``: a weighted average with weights proportional to ``1 / MAE`` of each
  member's log-price forecasts in a small rolling backtest *inside* the training series
  (``weight_origins`` origins, each fitted only on the data before it; members refit cheaply with
  what their full-window fit chose, as in :mod:`pipeline.forecasters.conformal`).

Combining the interval bounds quantile by quantile is *quantile averaging* (Vincentization,
Lichtendahl, Grushka-Cockayne & Winkler 2013): unlike mixing the members' distributions it does
not widen the band when members disagree on the centre. An ensemble of identical members gives
exactly the member's forecast (averages are taken as ``x_0 + sum w_i (x_i - x_0)``).

:meth:`~pipeline.forecasters.base.Forecaster.update` updates every member (the weights stay);
it refuses, changing nothing, when a member cannot update.
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
from pipeline.forecasters import forecaster_class, horizon_params
from pipeline.forecasters.base import Forecaster
from pipeline.forecasters.composite import (
    calibration_origins,
    default_horizon,
    load_member,
    refit_params,
    rolling_forecasts,
    save_member,
)

logger = logging.getLogger(__name__)

STATE_FILE = "ensemble.json"
COMBINE_METHODS = ("median", "mean", "inverse_mae")
DEFAULT_MEMBERS = ("naive", "garch", "arima")


def combine_columns(values: np.ndarray, method: str, weights: np.ndarray) -> np.ndarray:
    """Combine ``(n_members, h)`` log values into ``(h,)``; identical rows give that row."""
    if method == "median":
        return np.asarray(np.median(values, axis=0))
    first = values[0]
    return np.asarray(first + np.tensordot(weights, values - first, axes=1))


class Ensemble(Forecaster):
    """Median / average / accuracy-weighted combination of member forecasters."""

    name: ClassVar[str] = "ensemble"
    min_points: ClassVar[int] = 30
    #: The default members' model files depend on these (checked when loading an artifact).
    libraries: ClassVar[tuple[str, ...]] = ("arch", "statsmodels")
    complexity: ClassVar[int] = 3
    #: True when every member is (``update`` refuses otherwise).
    updatable: ClassVar[bool] = True

    def __init__(
        self,
        *,
        members: Sequence[str] = DEFAULT_MEMBERS,
        member_params: Sequence[dict[str, Any]] | None = None,
        combine: str = "median",
        weight_origins: int = 20,
        horizon: int | None = None,
    ) -> None:
        members = [str(m) for m in members]
        if not members:
            raise UsageError("ensemble: give at least one member model")
        if "ensemble" in members:
            raise UsageError("ensemble: an ensemble cannot contain itself")
        if combine not in COMBINE_METHODS:
            raise UsageError(
                f"ensemble: combine must be one of {', '.join(COMBINE_METHODS)}, got {combine!r}"
            )
        params = [dict(p) for p in (member_params or [{}] * len(members))]
        if len(params) != len(members):
            raise UsageError("ensemble: member_params must have one dict per member")
        if horizon is not None and (isinstance(horizon, bool) or int(horizon) < 1):
            raise UsageError(f"ensemble: horizon must be an integer >= 1, got {horizon!r}")
        super().__init__(
            members=members,
            member_params=params,
            combine=combine,
            weight_origins=int(weight_origins),
            horizon=None if horizon is None else int(horizon),
        )
        self.classes_ = [forecaster_class(m) for m in members]

    # -- fitting ------------------------------------------------------------------------------
    def resolved_horizon(self) -> int:
        """The horizon the caller gave, else the frequency table's default for the step."""
        given: int | None = self.params["horizon"]
        return given or default_horizon(self.step_)

    def member_kwargs(self) -> list[dict[str, Any]]:
        """Each member's constructor keywords; a member that calibrates over a horizon (a
        conformal model) gets the ensemble's unless its own ``member_params`` set one."""
        horizon = self.resolved_horizon()
        return [
            {**horizon_params(cls, horizon), **kw}
            for cls, kw in zip(self.classes_, self.params["member_params"], strict=True)
        ]

    def _fit(self, y: pd.Series) -> None:
        self.members_: list[Forecaster] = [
            cls(**kw).fit(y) for cls, kw in zip(self.classes_, self.member_kwargs(), strict=True)
        ]
        n = len(self.members_)
        self.member_mae_: list[float] | None = None
        if self.params["combine"] == "inverse_mae" and n > 1:
            self.weights_ = self._accuracy_weights(y)
        else:
            self.weights_ = np.full(n, 1.0 / n)

    def _update(self, y_new: pd.Series) -> None:
        blocked = [m.name for m in self.members_ if not m.updatable]
        if blocked:
            raise ForecastError(
                f"{self.name}: cannot update without refitting (member {', '.join(blocked)} cannot)"
            )
        self.members_ = [copy.deepcopy(m).update(y_new) for m in self.members_]

    def _accuracy_weights(self, y: pd.Series) -> np.ndarray:
        p = self.params
        horizon = self.resolved_horizon()
        min_train = max(max(c.min_points for c in self.classes_), math.ceil(len(y) / 2))
        origins = calibration_origins(len(y), min_train, horizon, p["weight_origins"])
        if len(origins) < 3:
            logger.warning("%s: series too short for accuracy weights; equal weights", self.name)
            return np.full(len(self.members_), 1.0 / len(self.members_))
        maes = []
        members = zip(self.classes_, self.member_kwargs(), self.members_, strict=True)
        for cls, kw, fitted in members:
            cal = {**kw, **refit_params(cls, fitted)}

            def factory(
                train: pd.Series, cls: type[Forecaster] = cls, cal: Any = cal
            ) -> Forecaster:
                return cls(**cal).fit(train)

            rf = rolling_forecasts(factory, y, origins, horizon, [])
            maes.append(float(np.nanmean(np.abs(rf.actual - rf.mean))))
        self.member_mae_ = maes
        inv = 1.0 / np.maximum(np.asarray(maes), 1e-12)
        return np.asarray(inv / inv.sum())

    def fitted_params(self) -> dict[str, Any]:
        if not hasattr(self, "members_"):
            return {}
        return {
            "weights": [float(w) for w in self.weights_],
            "member_mae_log": self.member_mae_,
            "members_fitted": [m.fitted_params() for m in self.members_],
        }

    # -- forecasting ----------------------------------------------------------------------------
    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        frames = [m.predict(h, levels) for m in self.members_]
        columns = ["mean"] + [f"{side}_{lv}" for lv in levels for side in ("lower", "upper")]
        out = {}
        for col in columns:
            values = np.log(np.stack([f[col].to_numpy(dtype=float) for f in frames]))
            out[col] = np.exp(combine_columns(values, self.params["combine"], self.weights_))
        return pd.DataFrame(out)

    # -- persistence ----------------------------------------------------------------------------
    def _save_state(self, folder: Path) -> list[str]:
        names: list[str] = []
        files: list[list[str]] = []
        for i, member in enumerate(self.members_):
            saved = save_member(member, folder, f"m{i}__")
            names += saved
            files.append([s.removeprefix(f"m{i}__") for s in saved])
        state = {
            "files": files,
            "weights": [float(w) for w in self.weights_],
            "member_mae_log": self.member_mae_,
        }
        (folder / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        return [*names, STATE_FILE]

    def _load_state(self, folder: Path) -> None:
        try:
            state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
            files = state["files"]
            self.weights_ = np.asarray(state["weights"], dtype=float)
            self.member_mae_ = state["member_mae_log"]
        except (OSError, ValueError, KeyError) as exc:
            raise ForecastError(f"{folder / STATE_FILE}: unreadable ensemble state: {exc}") from exc
        if len(files) != len(self.classes_):
            raise ForecastError(f"{folder / STATE_FILE}: member count does not match the params")
        self.members_ = [
            load_member(cls, folder, f"m{i}__", names, kw)
            for i, (cls, names, kw) in enumerate(
                zip(self.classes_, files, self.member_kwargs(), strict=True)
            )
        ]
