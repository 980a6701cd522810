"""Training stage: holdout metrics, a fresh refit on all data, versioned artifacts, a champion.

For every (series, model) pair, in parallel with joblib:

1. fit the model on the series minus its last ``holdout`` points and score the holdout forecast
   (:func:`pipeline.evaluation.metrics.forecast_metrics`);
2. fit a *fresh* forecaster on the whole (windowed) series and write it as a new version
   (:meth:`pipeline.artifacts.store.ArtifactStore.write_version`).

Before that, the *selection backtest* (:mod:`pipeline.train.selection`) scores every model on
the recent data. Once every version of a series is complete,
:func:`pipeline.evaluation.champion.training_champion` picks the champion from the backtest
summary (from the holdout metrics when the series is too short to backtest) and the champion
pointer is replaced. The naive baseline is always trained, so that every champion has beaten it.
A model that fails is recorded with its reason and the others go on.

CLI: ``python -m pipeline.train --coin bitcoin --freq 1d --models naive,arima``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from joblib import Parallel, delayed

from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from pipeline.config import Settings
from pipeline.errors import PipelineError, UsageError
from pipeline.evaluation.champion import ensure_naive, training_champion
from pipeline.forecasters import parse_models
from pipeline.series import SeriesId
from pipeline.train import tracking
from pipeline.train.fit import FitTask, progress, run_fit
from pipeline.train.selection import model_params, selection_backtest

if TYPE_CHECKING:
    from pipeline.evaluation.evidence import Evidence

# The module name even when run with ``python -m`` (where __name__ is "__main__").
logger = logging.getLogger(__spec__.name if __spec__ else __name__)


@dataclass
class TrainResult:
    """What training one series produced."""

    series: SeriesId
    versions: dict[str, ArtifactMetadata] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    champion: str | None = None
    champion_reason: str = ""
    failures: dict[str, str] = field(default_factory=dict)
    #: Points the artifacts were fitted on (after ``--until`` and ``--train-window``).
    n_points: int = 0
    #: Per-model summary of the selection backtest (empty when the series was too short).
    backtest: dict[str, dict[str, float]] = field(default_factory=dict)
    backtest_protocol: dict[str, Any] = field(default_factory=dict)
    #: Per-origin scores of the selection backtest (the champion rule's significance tests).
    evidence: Evidence | None = None

    @property
    def ok(self) -> bool:
        """At least one model produced a version."""
        return bool(self.versions)


# -- inputs ---------------------------------------------------------------------------------------
def raw_meta(data_dir: Path, series: SeriesId) -> dict[str, Any]:
    """The raw file's ``meta.json`` (4h series come from the hourly raw file); ``{}`` if absent."""
    from pipeline.ingest import raw_path, read_meta

    path = raw_path(data_dir, series.raw)
    meta = read_meta(path)
    if meta is None:
        logger.warning("no readable metadata beside %s: data source unknown", path)
        return {}
    return meta


def training_series(
    series: SeriesId,
    settings: Settings,
    *,
    train_window: int | None = None,
    until: datetime | None = None,
) -> pd.Series:
    """The processed prices, strictly before ``until``, then the last ``train_window`` points."""
    from pipeline.process.stage import load_training_series

    y = load_training_series(settings.data_dir, series)
    if until is not None:
        y = y[y.index < pd.Timestamp(until)]
        if y.empty:
            raise UsageError(f"{series.name}: no processed data before {until:%Y-%m-%d %H:%M} UTC")
    if train_window is not None:
        if train_window < 1:
            raise UsageError(f"--train-window must be >= 1, got {train_window}")
        y = y.iloc[-train_window:]
    return y


def default_holdout(n_points: int, horizon: int) -> int:
    """One served horizon, but at most a quarter of the series (short histories still train)."""
    return max(1, min(horizon, n_points // 4))


# -- stage functions ------------------------------------------------------------------------
def train_many(
    series_list: Sequence[SeriesId],
    settings: Settings,
    *,
    models: Sequence[str] | None = None,
    order: tuple[int, int, int] | None = None,
    train_window: int | None = None,
    until: datetime | None = None,
    holdout: int | None = None,
    promote: bool = True,
    n_jobs: int | None = None,
) -> list[TrainResult]:
    """Train ``models`` for every series in parallel; promote each series' champion at the end.

    Raises a :class:`PipelineError` when a series cannot be read; model failures are recorded
    in :attr:`TrainResult.failures` instead.
    """
    names = ensure_naive(list(dict.fromkeys(models)) if models else parse_models(None))
    if holdout is not None and holdout < 1:
        raise UsageError(f"--holdout must be >= 1, got {holdout}")
    store = ArtifactStore(settings.models_dir)
    jobs = settings.n_jobs if n_jobs is None else n_jobs
    results: dict[SeriesId, TrainResult] = {}
    tasks: list[FitTask] = []
    for series in series_list:
        from pipeline.process.stage import processed_path

        y = training_series(series, settings, train_window=train_window, until=until)
        meta = raw_meta(settings.data_dir, series)
        served = settings.horizon(series.freq)
        h = holdout if holdout is not None else default_holdout(len(y), served)
        if holdout is None and h < served:
            logger.warning(
                "%s: only %d points: holding out %d instead of the %d-step horizon",
                series.name, len(y), h, served,
            )  # fmt: skip
        extra: dict[str, Any] = {"simulated": bool(meta.get("simulated", False)), "holdout": h}
        if until is not None:
            extra["until"] = until.isoformat()
        results[series] = result = TrainResult(series, n_points=len(y))
        selection = selection_backtest(series, y, names, settings, order=order, n_jobs=jobs)
        result.backtest, result.backtest_protocol = selection.summary, selection.protocol
        result.evidence = selection.evidence
        logger.info(
            "training %s on %d points (%s .. %s), holdout %d, models %s",
            series.name,
            len(y),
            y.index[0],
            y.index[-1],
            h,
            ",".join(names),
            extra={"series": series.name},
        )
        for model in names:
            tasks.append(
                FitTask(
                    series=series,
                    model=model,
                    params=model_params(model, order, served),
                    y=y,
                    holdout=h,
                    horizon=served,
                    models_dir=store.root,
                    data_file=processed_path(settings.data_dir, series),
                    data_source=meta.get("source"),
                    extra={
                        **extra,
                        "backtest": {
                            "protocol": result.backtest_protocol,
                            "metrics": result.backtest.get(model, {}),
                        },
                    },
                )
            )

    parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
    for outcome in progress(parallel(delayed(run_fit)(t) for t in tasks), len(tasks)):
        result = results[outcome.series]
        if outcome.error is not None or outcome.metadata is None or outcome.metrics is None:
            result.failures[outcome.model] = outcome.error or "no artifact written"
            logger.error(
                "%s %s failed: %s",
                outcome.series.name,
                outcome.model,
                outcome.error,
                extra={"series": outcome.series.name, "model": outcome.model},
            )
            continue
        result.versions[outcome.model] = outcome.metadata
        result.metrics[outcome.model] = outcome.metrics
        logger.info(
            "%s %s: holdout MASE %.4f, version %s",
            outcome.series.name,
            outcome.model,
            outcome.metrics.get("mase", float("nan")),
            outcome.metadata.version,
            extra={"series": outcome.series.name, "model": outcome.model},
        )

    for result in results.values():
        if tracking.enabled(settings):  # MLflow, when MLFLOW_TRACKING_URI is set
            tracking.log_training(settings, result, store)
        _choose_champion(store, result, promote=promote)
    return list(results.values())


def _choose_champion(store: ArtifactStore, result: TrainResult, *, promote: bool) -> None:
    """Select (and unless ``promote`` is false, promote) the champion of a finished series."""
    if not result.versions:
        logger.error("%s: every model failed; the champion is unchanged", result.series.name)
        return
    try:
        serving = store.champion(result.series)
        champion, reason = training_champion(
            result.versions,
            result.backtest,
            result.metrics,
            evidence=result.evidence,
            incumbent=serving.model if serving is not None else None,
            freq=result.series.freq,
        )
    except PipelineError as exc:
        result.champion_reason = f"no champion: {exc}"
        logger.error("%s: %s; the champion is unchanged", result.series.name, exc)
        return
    result.champion, result.champion_reason = champion, reason
    if promote:
        store.promote(result.series, champion, result.versions[champion].version, reason)
    else:
        logger.info(
            "%s: champion would be %s (%s); not promoted", result.series.name, champion, reason
        )


def train_series(
    series: SeriesId,
    settings: Settings,
    *,
    models: Sequence[str],
    order: tuple[int, int, int] | None = None,
    train_window: int | None = None,
    until: datetime | None = None,
    holdout: int | None = None,
    promote: bool = True,
    n_jobs: int = 1,
) -> TrainResult:
    """Train ``models`` on one series (see :func:`train_many`)."""
    (result,) = train_many(
        [series],
        settings,
        models=models,
        order=order,
        train_window=train_window,
        until=until,
        holdout=holdout,
        promote=promote,
        n_jobs=n_jobs,
    )
    return result
