"""One unit of backtest work: fit a model once, forecast one or more origins, score each fold.

:func:`run_group` runs in a worker process (see :mod:`pipeline.evaluation.parallel`). It fits a
*fresh* forecaster on a copy of the points strictly before its first origin, so the model cannot
reach any later point; with ``refit_every=k`` the same fit forecasts the following origins
further ahead (it never sees newer data: no leak).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ForecastError, UsageError
from pipeline.evaluation.metrics import forecast_metrics, naive_scale
from pipeline.forecasters import Forecaster, forecaster_class, make_forecaster
from pipeline.forecasters.base import DEFAULT_LEVELS

#: A model to backtest: a registry name ("arima") or a Forecaster subclass.
ModelSpec = str | type[Forecaster]

#: The complexity of a model the registry does not know (it ranks as the most complex).
UNKNOWN_COMPLEXITY = 100


@dataclass
class FoldResult:
    """The outcome of one (model, origin): forecast rows, metrics, fit time, or an error."""

    model: str
    origin: pd.Timestamp
    refit: bool
    n_train: int
    train_start: pd.Timestamp
    fit_seconds: float
    rows: pd.DataFrame | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def model_name(spec: ModelSpec) -> str:
    return spec if isinstance(spec, str) else spec.name


def model_complexity(spec: ModelSpec) -> int:
    """The forecaster's ``complexity`` (ties in the champion rule go to the lower one)."""
    if isinstance(spec, str):
        try:
            return forecaster_class(spec).complexity
        except (UsageError, ImportError):
            return UNKNOWN_COMPLEXITY
    return spec.complexity


def min_points(spec: ModelSpec) -> int:
    """The fewest training points the forecaster accepts."""
    if isinstance(spec, str):
        return forecaster_class(spec).min_points
    return spec.min_points


def _new_forecaster(spec: ModelSpec, params: Mapping[str, Any]) -> Forecaster:
    if isinstance(spec, str):
        return make_forecaster(spec, **params)
    return spec(**params)


def run_group(
    spec: ModelSpec,
    params: Mapping[str, Any],
    y: pd.Series,
    positions: Sequence[int],
    horizon: int,
    train_window: int | None,
    levels: Sequence[int] = DEFAULT_LEVELS,
) -> list[FoldResult]:
    """Fit once at ``positions[0]`` (on points strictly before it) and forecast every origin.

    ``y`` is the part of the series this group needs. Runs in a worker process.
    """
    name = model_name(spec)
    first = positions[0]
    lo = max(0, first - train_window) if train_window else 0
    train = y.iloc[lo:first].copy()  # a copy: the model cannot reach any later point
    t0 = time.perf_counter()

    def failed(origin: pd.Timestamp, refit: bool, seconds: float, exc: Exception) -> FoldResult:
        msg = f"{type(exc).__name__}: {exc}"
        return FoldResult(name, origin, refit, len(train), train.index[0], seconds, error=msg)

    try:
        model = _new_forecaster(spec, params).fit(train)
    except Exception as exc:  # any model failure is recorded, not fatal
        seconds = time.perf_counter() - t0
        return [failed(y.index[p], p == first, seconds, exc) for p in positions]
    seconds = time.perf_counter() - t0
    results: list[FoldResult] = []
    for pos in positions:
        origin = y.index[pos]
        lo_pos = max(0, pos - train_window) if train_window else 0
        seen = y.iloc[lo_pos:pos]  # what a model refitted at this origin would see (for scaling)
        ahead = pos - first
        try:
            path = model.predict(ahead + horizon, levels).iloc[ahead:].reset_index(drop=True)
            actual = y.iloc[pos : pos + horizon]
            if not path["ds"].equals(pd.Series(actual.index, name="ds")):
                raise ForecastError(
                    f"{name}: forecast timestamps do not match the series at {origin} "
                    "(is the series on a regular grid?)"
                )
            metrics = forecast_metrics(actual.to_numpy(), path, seen, levels)
        except Exception as exc:
            results.append(failed(origin, pos == first, seconds, exc))
            continue
        rows = path.copy()
        rows.insert(0, "step", np.arange(1, horizon + 1))
        rows.insert(2, "actual", actual.to_numpy())
        rows["scale"] = naive_scale(seen)
        rows["last_price"] = float(seen.iloc[-1])
        fit_seconds = seconds if pos == first else 0.0
        results.append(
            FoldResult(
                name, origin, pos == first, len(train), train.index[0], fit_seconds, rows, metrics
            )
        )
    return results


__all__ = [
    "UNKNOWN_COMPLEXITY",
    "FoldResult",
    "ModelSpec",
    "min_points",
    "model_complexity",
    "model_name",
    "run_group",
]
