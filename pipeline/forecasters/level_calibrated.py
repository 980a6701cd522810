"""The band average with its 80% band calibrated on volatility-normalised errors (registry name
``calibrated_band_average``).

The band average (:mod:`pipeline.forecasters.band_average`) covers about 95% at 95% on the
shared BTC/ETH history, but its 80% band is too wide on hourly data (85.5% on BTC hourly): the
members' bands are Gaussian (naive) or Student-t (GARCH) shaped, and hourly returns have
fatter tails than that shape, so one scale cannot fit both levels. This model keeps the band
average's median and 95% band and takes the band of each *calibrated level* (80 by default)
from the empirical distribution of the training window's own volatility-normalised errors:

1. for every origin ``t`` inside the training window and every step ``k`` of the calibrated
   horizon, the scale ``sigma_k(t)`` is the equal-weight average of the members' log-price
   standard deviations ``k`` steps after ``t``: ``sigma * sqrt(k)`` for ``naive``, the square
   root of the summed closed-form GARCH variance forecasts for ``garch`` / ``gjr_garch`` (their
   fitted parameters, the variance recursion run through the window as in
   :func:`pipeline.forecasters.garch.filter_garch`);
2. the score is ``|log P(t+k) - log P(t)| / sigma_k(t)``; ``q_L`` is the empirical ``L``%
   quantile of all the scores, pooled over origins and steps;
3. the forecast's ``L``% band is ``log P(T) +- q_L * sigma_k(T)``, with ``sigma_k(T)`` from the
   members' state at the forecast origin (so the band still follows the GARCH volatility).

For a Gaussian random walk ``q_80`` is 1.28 (the normal quantile); fat tails make it smaller,
which narrows the 80% band where the Gaussian shape over-covers. ``weight`` below 1 blends the
calibrated half-width log-geometrically with the band average's own (0: the band average).
Pooling every origin and step of the window gives tens of thousands of (overlapping) scores:
per-step quantiles, a later part of the window only (more weight on recent errors, as
adaptive conformal inference does) or calibrating the 95% band as well scored no better. On
the replay it lowered WIS on BTC hourly and ETH daily but not on BTC daily, and widened the
daily 80% bands past 82% coverage, so it is the champion rule's anchor of intraday series only
(``FREQ_ANCHORS`` in :mod:`pipeline.evaluation.champion`; figures in ``docs/forecasters.md``).
The calibration is cheap (closed forms, no refits).

:meth:`~pipeline.forecasters.base.Forecaster.update` moves the members (the GARCH variance
recursion runs on); the quantiles stay those of the fit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.errors import ForecastError, UsageError
from pipeline.forecasters.band_average import BAND_MEMBERS, BandAverage
from pipeline.forecasters.base import Forecaster
from pipeline.forecasters.baselines import Drift, Naive
from pipeline.forecasters.garch import GarchForecaster, GarchParams

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "level_calibration.json"
#: Fewest finite scores a calibration accepts.
MIN_SCORES = 100


def next_variances(p: GarchParams, log_returns: np.ndarray) -> np.ndarray:
    """Conditional variance of the return after each of ``log_returns`` (scaled units): the
    recursion of :func:`pipeline.forecasters.garch.filter_garch` (``arch``'s backcast start),
    every step kept; the last value is the fitted model's ``next_variance()``."""
    e = np.asarray(log_returns, dtype=float) * p.scale - p.mu
    tau = min(75, e.size)
    w = 0.94 ** np.arange(tau)
    sigma2 = float(np.sum(w / w.sum() * e[:tau] ** 2))
    out = np.empty(e.size)
    for t in range(e.size):
        sigma2 = p.omega + (p.alpha + p.gamma * (e[t] < 0)) * e[t] ** 2 + p.beta * sigma2
        out[t] = sigma2
    return out


def cumulative_sd(first: np.ndarray, p: GarchParams, h: int) -> np.ndarray:
    """``(len(first), h)`` log-unit sd of the cumulative return over 1..h steps, from the
    first-step variances ``first`` and the closed-form variance path of ``p``."""
    out = np.empty((first.size, h))
    current = np.asarray(first, dtype=float).copy()
    total = np.zeros(first.size)
    for k in range(h):
        total += current
        out[:, k] = np.sqrt(total) / p.scale
        current = p.omega + p.persistence * current
    return out


def member_scales(member: Forecaster, log_returns: np.ndarray | None, h: int) -> np.ndarray:
    """A member's log-price sd for steps 1..h: after every return of ``log_returns`` (rows),
    or, with ``None``, one row from the member's current state (the forecast origin)."""
    rows = 1 if log_returns is None else log_returns.size
    if isinstance(member, GarchForecaster):
        p = member.garch_
        first = (
            np.array([p.next_variance()]) if log_returns is None else next_variances(p, log_returns)
        )
        return cumulative_sd(first, p, h)
    if isinstance(member, Naive):
        return np.tile(member.sigma_ * np.sqrt(np.arange(1.0, h + 1)), (rows, 1))
    raise ForecastError(f"no closed-form scale for member {member.name}")  # checked at init


def blend(own: np.ndarray, calibrated: np.ndarray, weight: float) -> np.ndarray:
    """Log-geometric blend of two half-widths: ``own**(1 - weight) * calibrated**weight``
    (``weight`` 1: the calibrated one exactly, 0: the band average's own)."""
    if weight == 1.0:
        return calibrated
    if weight == 0.0:
        return own
    return np.asarray(np.maximum(own, 0.0) ** (1.0 - weight) * calibrated**weight)


class CalibratedBandAverage(BandAverage):
    """The band average with per-level bands from volatility-normalised in-window errors."""

    name: ClassVar[str] = "calibrated_band_average"
    complexity: ClassVar[int] = 3

    def __init__(
        self,
        *,
        members: Sequence[str] = BAND_MEMBERS,
        member_params: Sequence[dict[str, Any]] | None = None,
        calibrate_levels: Sequence[int] = (80,),
        weight: float = 1.0,
        horizon: int | None = None,
    ) -> None:
        levels = sorted({int(lv) for lv in calibrate_levels})
        if any(not 0 < lv < 100 for lv in levels):
            raise UsageError(f"{self.name}: calibrate_levels must lie in (0, 100), got {levels}")
        if not 0.0 <= float(weight) <= 1.0:
            raise UsageError(f"{self.name}: weight must lie in [0, 1], got {weight!r}")
        super().__init__(
            members=members, member_params=member_params, combine="mean", horizon=horizon
        )
        self.params["calibrate_levels"] = levels
        self.params["weight"] = float(weight)
        for cls in self.classes_:
            closed_form = (issubclass(cls, Naive) and not issubclass(cls, Drift)) or (
                issubclass(cls, GarchForecaster) and not cls.drift
            )
            if not closed_form:
                raise UsageError(
                    f"{self.name}: member {cls.name} has no closed-form random-walk scale; "
                    "use naive, garch or gjr_garch"
                )

    # -- fitting ------------------------------------------------------------------------------
    def _fit(self, y: pd.Series) -> None:
        super()._fit(y)
        horizon = self.resolved_horizon()
        log_y = np.log(y.to_numpy(dtype=float))
        scale = self.scales(np.diff(log_y), horizon)  # row t: origin at price t + 1
        n = log_y.size
        scores = np.full(scale.shape, np.nan)
        for k in range(horizon):
            origin = np.arange(1, n - 1 - k)
            scores[origin - 1, k] = (
                np.abs(log_y[origin + k + 1] - log_y[origin]) / scale[origin - 1, k]
            )
        finite = scores[np.isfinite(scores)]
        if finite.size < MIN_SCORES:
            raise ForecastError(
                f"{self.name}: series too short ({n} points) to calibrate its bands from "
                f"{MIN_SCORES} errors; give more points or a smaller horizon"
            )
        levels = self.params["calibrate_levels"]
        self.quantiles_ = {lv: float(np.quantile(finite, lv / 100.0)) for lv in levels}
        self.calibration_: dict[str, Any] = {
            "horizon": horizon,
            "n_scores": int(finite.size),
            "quantiles": {str(lv): q for lv, q in self.quantiles_.items()},
        }
        logger.debug("%s: calibrated %s", self.name, self.calibration_)

    def scales(self, log_returns: np.ndarray | None, h: int) -> np.ndarray:
        """The band's scale ``sigma_k``: the weighted mean of the members' sds (see the
        module docstring); rows as in :func:`member_scales`."""
        parts = [member_scales(m, log_returns, h) for m in self.members_]
        return np.asarray(np.tensordot(self.weights_, np.stack(parts), axes=1))

    def fitted_params(self) -> dict[str, Any]:
        out = super().fitted_params()
        if hasattr(self, "calibration_"):
            out["calibration"] = self.calibration_
        return out

    # -- forecasting ----------------------------------------------------------------------------
    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        frame = super()._predict(h, levels)
        centre = np.log(frame["mean"].to_numpy(dtype=float))
        sd = self.scales(None, h)[0]
        w = self.params["weight"]
        for level in levels:
            if level in self.quantiles_:
                half = self.quantiles_[level] * sd
                lower = centre - np.log(frame[f"lower_{level}"].to_numpy(dtype=float))
                upper = np.log(frame[f"upper_{level}"].to_numpy(dtype=float)) - centre
                frame[f"lower_{level}"] = np.exp(centre - blend(lower, half, w))
                frame[f"upper_{level}"] = np.exp(centre + blend(upper, half, w))
        return frame

    # -- persistence ----------------------------------------------------------------------------
    def _save_state(self, folder: Path) -> list[str]:
        names = super()._save_state(folder)
        text = json.dumps(self.calibration_, indent=2) + "\n"
        (folder / CALIBRATION_FILE).write_text(text, encoding="utf-8")
        return [*names, CALIBRATION_FILE]

    def _load_state(self, folder: Path) -> None:
        super()._load_state(folder)
        path = folder / CALIBRATION_FILE
        try:
            calibration: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            self.quantiles_ = {int(k): float(v) for k, v in calibration["quantiles"].items()}
            self.calibration_ = calibration
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ForecastError(f"{path}: unreadable band calibration: {exc}") from exc


__all__ = ["CalibratedBandAverage", "cumulative_sd", "member_scales", "next_variances"]
