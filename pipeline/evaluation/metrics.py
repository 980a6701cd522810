"""Forecast accuracy metrics: point errors, scaled errors and interval quality.

Definitions (``y`` actual, ``f`` point forecast, ``[l, u]`` a central interval at level ``L``):

* ``mae`` = mean |y - f|; ``rmse`` = sqrt(mean (y - f)^2)
* ``mape`` = 100 * mean |y - f| / |y|; ``smape`` = 100 * mean 2|y - f| / (|y| + |f|)
* ``mase`` = mae / ``naive_scale(y_train)``: the in-sample one-step naive MAE of the training window
  (Hyndman & Koehler 2006), so 1.0 means "as good as yesterday's price, in-sample"
* ``directional_accuracy`` = share of steps where sign(f - p) == sign(y - p), ``p`` the last
  training price (a forecast move under 1e-9 of ``p`` counts as no move)
* ``coverage_L`` = share of actuals with l <= y <= u (a fraction 0..1); ``width_L`` = mean (u - l)
* ``winkler_L`` = mean of (u - l) + (2 / a) (l - y) [y < l] + (2 / a) (y - u) [y > u], a = 1 - L/100
  (the interval score of Gneiting & Raftery 2007: lower is better, misses are penalised)
* ``pinball_Q`` = mean pinball (quantile) loss of the ``Q``% quantile forecast: the interval ends
  are the 2.5/97.5% (95) and 10/90% (80) quantiles, the ``mean`` column the 50% quantile (the
  median: see :func:`pipeline.forecasters.base.lognormal_frame`)
* ``wis`` = mean weighted interval score over the median and the 80/95% intervals (Bracher et al.
  2021), i.e. twice the mean of the five pinball losses: the quantile form of the CRPS, a proper
  score of the whole forecast distribution (:mod:`pipeline.evaluation.scoring`), price units
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluation.scoring import (
    interval_quantiles,
    pinball_loss,
    weighted_interval_score,
    winkler_score,
)
from pipeline.forecasters.base import DEFAULT_LEVELS

#: The pinball-loss keys for levels (80, 95): ``pinball_2.5`` ... ``pinball_97.5``.
PINBALL_KEYS: tuple[str, ...] = tuple(key for _, _, key in interval_quantiles(DEFAULT_LEVELS))

#: Every key :func:`forecast_metrics` returns for levels (80, 95), in report order.
METRIC_KEYS: tuple[str, ...] = (
    "mae",
    "rmse",
    "mape",
    "smape",
    "mase",
    "directional_accuracy",
    "coverage_80",
    "coverage_95",
    "width_80",
    "width_95",
    "winkler_80",
    "winkler_95",
    "wis",
    *PINBALL_KEYS,
)

#: One line per metric key (``L`` a level, ``Q`` a quantile in %), for the report files.
METRIC_DEFINITIONS: dict[str, str] = {
    "mae": "mean |actual - forecast|, price units",
    "rmse": "sqrt(mean (actual - forecast)^2), per fold, averaged over folds",
    "mape": "100 x mean |error| / |actual|",
    "smape": "100 x mean 2|error| / (|actual| + |forecast|)",
    "mase": "MAE / in-sample one-step naive MAE of the fold's training window",
    "directional_accuracy": "share of steps where the forecast and the actual move the same way "
    "from the last training price",
    "coverage_L": "share of actuals inside the L% interval (target L%)",
    "width_L": "mean width of the L% interval, price units",
    "winkler_L": "interval score: width + (2/alpha) x distance outside the interval, "
    "alpha = 1 - L/100",
    "wis": "weighted interval score over the median (the forecast) and the 80/95% intervals: "
    "(|actual - median| / 2 + sum_L (alpha_L / 2) winkler_L) / 2.5, i.e. twice the mean pinball "
    "loss of the 2.5/10/50/90/97.5% quantiles; the quantile form of the CRPS, price units",
    "wis_ratio": "mean WIS / naive's mean WIS on the origins both forecast (< 1: better)",
    "pinball_Q": "pinball loss of the Q% quantile: (1{actual < q} - Q/100) x (q - actual), "
    "q = the interval end (or the median for Q = 50)",
    "fit_seconds": "wall time of one fit (mean over the fits)",
}


def naive_scale(y_train: pd.Series | np.ndarray) -> float:
    """In-sample one-step naive MAE of the training window: mean |y_t - y_{t-1}|.

    ``nan`` when it is undefined (fewer than two points, or a constant series).
    """
    values = np.asarray(y_train, dtype=float)
    if values.size < 2:
        return float("nan")
    scale = float(np.mean(np.abs(np.diff(values))))
    return scale if scale > 0 else float("nan")


def direction(forecast: np.ndarray, last: float | np.ndarray) -> np.ndarray:
    """Sign of the forecast move from ``last``; a move below 1e-9 of the price counts as none.

    (A random walk's point forecast is ``exp(log(last))``: rounding must not give it a direction.)
    """
    move = np.asarray(forecast, dtype=float) - last
    return np.where(np.abs(move) <= 1e-9 * np.abs(last), 0.0, np.sign(move))


def interval_scores(
    actual: np.ndarray, forecast: Mapping[str, Any], levels: Sequence[int] = DEFAULT_LEVELS
) -> dict[str, np.ndarray]:
    """Per-point ``coverage_L`` (0/1), ``width_L``, ``winkler_L``, ``pinball_Q`` and ``wis``.

    ``forecast`` maps ``mean``, ``lower_L`` and ``upper_L`` to arrays (or columns) aligned with
    ``actual``; the mean of each array over points is the metric of the same name.
    """
    y = np.asarray(actual, dtype=float)
    col = {name: np.asarray(forecast[name], dtype=float) for name in _columns(levels)}
    out: dict[str, np.ndarray] = {}
    for level in sorted(levels):
        lo, hi = col[f"lower_{level}"], col[f"upper_{level}"]
        out[f"coverage_{level}"] = ((y >= lo) & (y <= hi)).astype(float)
        out[f"width_{level}"] = hi - lo
        out[f"winkler_{level}"] = winkler_score(y, lo, hi, level)
    bands = {level: (col[f"lower_{level}"], col[f"upper_{level}"]) for level in levels}
    out["wis"] = weighted_interval_score(y, col["mean"], bands)
    for tau, name, key in interval_quantiles(levels):
        out[key] = pinball_loss(y, col[name], tau)
    return out


def _columns(levels: Sequence[int]) -> list[str]:
    return ["mean", *(f"{side}_{level}" for level in levels for side in ("lower", "upper"))]


def forecast_metrics(
    actual: np.ndarray,
    forecast: pd.DataFrame,
    y_train: pd.Series,
    levels: Sequence[int] = DEFAULT_LEVELS,
) -> dict[str, float]:
    """Metrics of one forecast path against its actuals (see the module docstring).

    ``forecast`` has ``mean`` and ``lower_L``/``upper_L`` columns aligned row by row with
    ``actual``; ``y_train`` is the training window the forecast was made from.
    """
    y = np.asarray(actual, dtype=float)
    f = forecast["mean"].to_numpy(dtype=float)
    if y.shape != f.shape:
        raise ValueError(f"actual has {y.size} points but the forecast has {f.size}")
    err = y - f
    abs_err = np.abs(err)
    train = np.asarray(y_train, dtype=float)
    last = float(train[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        out: dict[str, float] = {
            "mae": float(np.mean(abs_err)),
            "rmse": float(np.sqrt(np.mean(err**2))),
            "mape": float(100.0 * np.mean(abs_err / np.abs(y))),
            "smape": float(100.0 * np.mean(2.0 * abs_err / (np.abs(y) + np.abs(f)))),
            "mase": float(np.mean(abs_err) / naive_scale(train)),
            "directional_accuracy": float(np.mean(direction(f, last) == np.sign(y - last))),
        }
    scores = interval_scores(y, forecast, levels)
    out.update({key: float(np.mean(values)) for key, values in scores.items()})
    return out
