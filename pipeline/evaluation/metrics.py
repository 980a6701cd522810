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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.forecasters.base import DEFAULT_LEVELS

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
)


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


def winkler_score(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float
) -> np.ndarray:
    """Interval (Winkler) score of each point for a central ``level``% interval."""
    alpha = 1.0 - level / 100.0
    below = np.clip(lower - actual, 0.0, None)
    above = np.clip(actual - upper, 0.0, None)
    return (upper - lower) + (2.0 / alpha) * (below + above)


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
    for level in sorted(levels):
        lo = forecast[f"lower_{level}"].to_numpy(dtype=float)
        hi = forecast[f"upper_{level}"].to_numpy(dtype=float)
        out[f"coverage_{level}"] = float(np.mean((y >= lo) & (y <= hi)))
        out[f"width_{level}"] = float(np.mean(hi - lo))
        out[f"winkler_{level}"] = float(np.mean(winkler_score(y, lo, hi, level)))
    return out
