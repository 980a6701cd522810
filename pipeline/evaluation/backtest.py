"""Rolling-origin backtests (time-series cross-validation) and their results.

:func:`run_backtest` scores every model at every origin of a
:class:`~pipeline.evaluation.protocol.BacktestProtocol`: the fits run in parallel
(:mod:`pipeline.evaluation.parallel`), each one on the points strictly before its origin
(:func:`pipeline.evaluation.folds.run_group`), and the folds come back as a
:class:`BacktestResult`: per-step forecasts and actuals, per-fold metrics, a per-model summary
and metrics by horizon step. Choosing a champion from the summary is
:mod:`pipeline.evaluation.champion`'s job.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import UsageError
from pipeline.evaluation.calibration import calibration_tests
from pipeline.evaluation.champion import BASELINE_MODEL
from pipeline.evaluation.folds import (
    UNKNOWN_COMPLEXITY,
    FoldResult,
    ModelSpec,
    min_points,
    model_complexity,
    model_name,
)
from pipeline.evaluation.metrics import METRIC_KEYS, direction, interval_scores
from pipeline.evaluation.parallel import check_backend, execute, plan
from pipeline.evaluation.protocol import BacktestProtocol, make_origins
from pipeline.forecasters.base import DEFAULT_LEVELS
from pipeline.series import freq_offset

logger = logging.getLogger(__name__)

#: Fields of the per-step rows kept for every fold (``folds.csv``).
FOLD_COLUMNS = ["origin", "model", "ds", "step", "actual", "mean"]


@dataclass
class BacktestResult:
    """Everything a backtest produced."""

    series: str
    protocol: BacktestProtocol
    models: list[str]
    complexity: dict[str, int]
    folds: pd.DataFrame  # one row per (origin, model, step): the forecasts and actuals
    fold_metrics: pd.DataFrame  # one row per (origin, model): metrics and fit time
    failures: dict[str, list[str]]  # model -> "origin: error" for each failed fold
    origins: list[pd.Timestamp]
    elapsed_seconds: float = 0.0

    def summary(self) -> dict[str, dict[str, float]]:
        """Per model: every metric averaged over folds, mean fit time, folds and failures."""
        out: dict[str, dict[str, float]] = {}
        for name in self.models:
            part = self.fold_metrics[self.fold_metrics["model"] == name]
            ok = part[part["error"].isna()]
            row = {k: float(ok[k].mean()) if len(ok) else float("nan") for k in METRIC_KEYS}
            fits = ok[ok["refit"]]["fit_seconds"]
            row["fit_seconds"] = float(fits.mean()) if len(fits) else float("nan")
            row["n_folds"] = float(len(ok))
            row["failed_folds"] = float(len(part) - len(ok))
            row["complexity"] = float(self.complexity.get(name, UNKNOWN_COMPLEXITY))
            row["wis_ratio"] = paired_ratio(self.fold_metrics, name, "wis")
            out[name] = row
        return out

    def calibration(self) -> dict[str, Any]:
        """Kupiec and Christoffersen p-values per model (:mod:`pipeline.evaluation.calibration`)."""
        p = self.protocol
        return calibration_tests(self.folds, self.origins, p.horizon, freq_offset(p.freq), p.levels)

    def by_horizon(self) -> pd.DataFrame:
        """Per model and step: metrics pooled over origins (MASE = mean of |error| / scale)."""
        return horizon_metrics(self.folds, self.protocol.levels)


def paired_ratio(
    fold_metrics: pd.DataFrame, model: str, key: str, reference: str = BASELINE_MODEL
) -> float:
    """``model``'s mean ``key`` over ``reference``'s on the origins both forecast (``nan`` when
    the reference was not evaluated or has a zero mean there)."""
    if fold_metrics.empty:
        return float("nan")
    ok = fold_metrics[fold_metrics["error"].isna()]
    mine = ok[ok["model"] == model].set_index("origin")[key]
    theirs = ok[ok["model"] == reference].set_index("origin")[key]
    common = mine.index.intersection(theirs.index)
    if common.empty:
        return float("nan")
    ref = float(theirs.loc[common].mean())
    return float(mine.loc[common].mean()) / ref if ref else float("nan")


def horizon_metrics(folds: pd.DataFrame, levels: Sequence[int] = DEFAULT_LEVELS) -> pd.DataFrame:
    """Metrics by (model, step) from per-step fold rows (also works on a re-read ``folds.csv``)."""
    if folds.empty:
        return pd.DataFrame(columns=["model", "step", *METRIC_KEYS])
    y = folds["actual"].to_numpy(float)
    f = folds["mean"].to_numpy(float)
    p = folds["last_price"].to_numpy(float)
    err = np.abs(y - f)
    parts: dict[str, Any] = {
        "model": folds["model"],
        "step": folds["step"],
        "mae": err,
        "sq": (y - f) ** 2,
        "mape": 100 * err / np.abs(y),
        "smape": 100 * 2 * err / (np.abs(y) + np.abs(f)),
        "mase": err / folds["scale"].to_numpy(float),
        "directional_accuracy": (direction(f, p) == np.sign(y - p)).astype(float),
    }
    parts.update(interval_scores(y, folds, levels))
    table = pd.DataFrame(parts).groupby(["model", "step"], sort=True).mean().reset_index()
    table.insert(3, "rmse", np.sqrt(table.pop("sq")))
    return table


def horizon_ratio(
    folds: pd.DataFrame,
    key: str = "wis",
    levels: Sequence[int] = DEFAULT_LEVELS,
    reference: str = BASELINE_MODEL,
) -> pd.DataFrame:
    """Per step (rows) and model (columns): the mean ``key`` (a per-point score of
    :func:`~pipeline.evaluation.metrics.interval_scores`) over ``reference``'s on the same
    (origin, step) points. Empty when the reference was not evaluated."""
    if folds.empty or reference not in set(folds["model"]):
        return pd.DataFrame()
    scores = folds[["origin", "model", "step"]].copy()
    scores["score"] = interval_scores(folds["actual"].to_numpy(float), folds, levels)[key]
    wide = scores.pivot_table(index=["origin", "step"], columns="model", values="score")
    ref = wide[reference]
    out = {}
    for model in (m for m in folds["model"].unique() if m in wide):
        both = wide[model].notna() & ref.notna()
        num = wide.loc[both, model].groupby(level="step").mean()
        out[str(model)] = num / ref[both].groupby(level="step").mean().replace(0.0, np.nan)
    return pd.DataFrame(out)


def run_backtest(
    y: pd.Series,
    models: Sequence[ModelSpec],
    protocol: BacktestProtocol,
    *,
    series: str = "",
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    progress: bool | None = None,
) -> BacktestResult:
    """Backtest ``models`` on the price series ``y`` under ``protocol``.

    A timezone-naive index (and naive protocol times) are taken as UTC, as the forecasters take
    them. Raises :class:`UsageError` when the protocol leaves no origin with enough data.
    """
    check_backend(backend)
    y, protocol = _as_utc(y, protocol)
    if not models:
        raise UsageError("no models to evaluate")
    names = [model_name(m) for m in models]
    if len(set(names)) != len(names):
        raise UsageError(f"duplicate models in {names}")
    min_train = max((min_points(m) for m in models), default=2)
    if protocol.train_window is not None and protocol.train_window < min_train:
        raise UsageError(
            f"--train-window {protocol.train_window} is below the {min_train} points "
            "some model needs"
        )
    positions = make_origins(y.index, protocol, min_train=max(min_train, 2))
    if not positions:
        raise UsageError(
            f"no usable origin between {protocol.start} and {protocol.end} for {series or 'the'} "
            f"series ({len(y)} points from {y.index[0] if len(y) else '-'} to "
            f"{y.index[-1] if len(y) else '-'}): each origin needs {min_train} points before it "
            f"and {protocol.horizon} after it"
        )
    groups = plan(models, model_params or {}, positions, protocol.refit_every)
    logger.info(
        "backtesting %s: %d models x %d origins (%d fits), horizon %d, backend %s",
        series or "series",
        len(names),
        len(positions),
        len(groups),
        protocol.horizon,
        backend,
        extra={"series": series},
    )
    t0 = time.perf_counter()
    results = execute(
        groups,
        y,
        protocol,
        n_jobs=n_jobs,
        backend=backend,
        scheduler=scheduler,
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    elapsed = time.perf_counter() - t0
    return _collect(series, protocol, models, results, [y.index[p] for p in positions], elapsed)


def _utc(when: pd.Timestamp) -> pd.Timestamp:
    return when.tz_localize("UTC") if when.tzinfo is None else when


def _as_utc(y: pd.Series, protocol: BacktestProtocol) -> tuple[pd.Series, BacktestProtocol]:
    """``y`` and ``protocol`` with naive timestamps localized to UTC (aware ones unchanged).

    The forecasters localize a naive training series, so their forecast timestamps would never
    match a naive series' actuals; doing it once here keeps every fold comparable.
    """
    if isinstance(y.index, pd.DatetimeIndex) and y.index.tz is None:
        y = y.tz_localize("UTC")
    if protocol.start.tzinfo is None or protocol.end.tzinfo is None:
        protocol = replace(protocol, start=_utc(protocol.start), end=_utc(protocol.end))
    return y, protocol


def _collect(
    series: str,
    protocol: BacktestProtocol,
    models: Sequence[ModelSpec],
    results: Sequence[FoldResult],
    origins: list[pd.Timestamp],
    elapsed: float,
) -> BacktestResult:
    order = {model_name(m): i for i, m in enumerate(models)}
    results = sorted(results, key=lambda r: (order[r.model], r.origin))
    rows, metric_rows = [], []
    failures: dict[str, list[str]] = {}
    for r in results:
        metric_rows.append(
            {
                "origin": r.origin,
                "model": r.model,
                "refit": r.refit,
                "n_train": r.n_train,
                "train_start": r.train_start,
                "fit_seconds": r.fit_seconds,
                "error": r.error,
                **{k: r.metrics.get(k, float("nan")) for k in METRIC_KEYS},
            }
        )
        if r.error is not None:
            failures.setdefault(r.model, []).append(f"{r.origin.isoformat()}: {r.error}")
            logger.warning("%s failed at origin %s: %s", r.model, r.origin, r.error)
        elif r.rows is not None:
            part = r.rows.copy()
            part.insert(0, "model", r.model)
            part.insert(0, "origin", r.origin)
            rows.append(part)
    folds = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=FOLD_COLUMNS)
    fold_metrics = pd.DataFrame(metric_rows)
    fold_metrics["error"] = fold_metrics["error"].astype(object)
    return BacktestResult(
        series=series,
        protocol=protocol,
        models=[model_name(m) for m in models],
        complexity={model_name(m): model_complexity(m) for m in models},
        folds=folds,
        fold_metrics=fold_metrics,
        failures=failures,
        origins=origins,
        elapsed_seconds=elapsed,
    )


__all__ = [
    "FOLD_COLUMNS",
    "BacktestResult",
    "horizon_metrics",
    "horizon_ratio",
    "paired_ratio",
    "run_backtest",
]
