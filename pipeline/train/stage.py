"""Training stage: holdout metrics, a fresh refit on all data, versioned artifacts, a champion.

For every (series, model) pair, in parallel with joblib:

1. fit the model on the series minus its last ``holdout`` points and score the holdout forecast
   (:func:`pipeline.evaluation.metrics.forecast_metrics`);
2. fit a *fresh* forecaster on the whole (windowed) series and write it as a new version
   (:meth:`pipeline.artifacts.store.ArtifactStore.write_version`).

Before that, a short rolling-origin backtest of every model on the recent data (the *selection
backtest*: ``BACKTEST_ORIGINS`` origins, sliding window ``BACKTEST_WINDOW``) gives metrics that
mean something for intervals (one holdout's coverage is 0% or 100% per step); its per-model
summary is stored in each version's metadata (``extra.backtest``). Once every version of a series
is complete, :func:`pipeline.evaluation.champion.select_champion` picks the champion from the
backtest
summary (from the holdout metrics when the series is too short to backtest) and the champion
pointer is replaced. The naive baseline is always trained, so that every champion has beaten it.
A model that fails is recorded with its reason and the others go on.

CLI: ``python -m pipeline.train --coin bitcoin --freq 1d --models naive,arima``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from joblib import Parallel, delayed

from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from pipeline.config import Settings
from pipeline.errors import ForecastError, PipelineError, UsageError
from pipeline.forecasters import make_forecaster, parse_models
from pipeline.series import SeriesId

# The module name even when run with ``python -m`` (where __name__ is "__main__").
logger = logging.getLogger(__spec__.name if __spec__ else __name__)

#: Coverage band for the champion on one holdout. The issue asks for the best holdout MASE:
#: one holdout of h points has a 95% coverage of 100% or at most (h-1)/h, so the backtest's
#: default 85-99% band would exclude every well-calibrated model here.
HOLDOUT_COVERAGE_BAND = (0.0, 1.0)


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

    @property
    def ok(self) -> bool:
        """At least one model produced a version."""
        return bool(self.versions)


@dataclass
class _Task:
    """Everything one worker needs: picklable, no settings object."""

    series: SeriesId
    model: str
    params: dict[str, Any]
    y: pd.Series
    holdout: int
    horizon: int
    models_dir: Path
    data_file: Path | None
    data_source: str | None
    extra: dict[str, Any]


@dataclass
class _Outcome:
    series: SeriesId
    model: str
    metrics: dict[str, float] | None = None
    metadata: ArtifactMetadata | None = None
    error: str | None = None
    seconds: float = 0.0


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


def model_params(model: str, order: tuple[int, int, int] | None) -> dict[str, Any]:
    """Constructor parameters for ``model`` from the CLI options."""
    if model == "arima" and order is not None:
        return {"order": order}
    return {}


# -- one (series, model) fit ------------------------------------------------------------------
def _run_task(task: _Task) -> _Outcome:
    """Holdout score, then a fresh refit on all points, written as a version. Never raises."""
    from pipeline.evaluation.metrics import forecast_metrics

    start = time.perf_counter()
    outcome = _Outcome(task.series, task.model)
    try:
        y, h = task.y, task.holdout
        if len(y) <= h:
            raise ForecastError(
                f"{task.model}: {len(y)} points cannot hold out {h}; "
                "lower --holdout or use more data"
            )
        train, actual = y.iloc[:-h], y.iloc[-h:]
        scored = make_forecaster(task.model, **task.params).fit(train)
        forecast = scored.predict(h)
        metrics = {
            k: float(v) for k, v in forecast_metrics(actual.to_numpy(), forecast, train).items()
        }
        final = make_forecaster(task.model, **task.params).fit(y)
        outcome.metadata = ArtifactStore(task.models_dir).write_version(
            task.series,
            final,
            y,
            horizon=task.horizon,
            metrics=dict[str, float | None](metrics),
            data_file=task.data_file,
            data_source=task.data_source,
            extra=task.extra,
        )
        outcome.metrics = metrics
    except Exception as exc:  # noqa: BLE001 - one model failing must not stop the others
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.seconds = time.perf_counter() - start
    return outcome


def _progress(outcomes: Iterator[_Outcome], total: int) -> Iterator[_Outcome]:
    """A tqdm bar on a terminal, one log line per finished fit otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(outcomes, total=total, desc="training", unit="fit", file=sys.stderr)
        return
    for done, outcome in enumerate(outcomes, start=1):
        logger.info(
            "fit %d/%d done: %s %s (%.1fs, %s)",
            done,
            total,
            outcome.series.name,
            outcome.model,
            outcome.seconds,
            "ok" if outcome.error is None else "failed",
        )
        yield outcome


# -- stage functions ------------------------------------------------------------------------
def selection_backtest(
    series: SeriesId,
    y: pd.Series,
    models: Sequence[str],
    settings: Settings,
    *,
    order: tuple[int, int, int] | None = None,
    n_jobs: int = 1,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """A short rolling-origin backtest of ``models`` on the end of ``y``.

    Returns (per-model summary, protocol); both empty when ``y`` is too short for one origin.
    """
    from pipeline.evaluation.backtest import default_protocol, run_backtest

    window = min(settings.backtest_window, max(10, len(y) // 2))
    try:
        protocol = default_protocol(
            series.freq, y.index, n_origins=settings.backtest_origins, train_window=window
        )
        # Every origin gets a full window of history (calibrated models need it), so a short
        # series has fewer origins rather than folds that fail for lack of data.
        if len(y) > window and protocol.start < y.index[window]:
            protocol = dataclasses.replace(protocol, start=y.index[window])
        result = run_backtest(
            y,
            list(models),
            protocol,
            series=series.name,
            model_params={m: model_params(m, order) for m in models},
            n_jobs=n_jobs,
            progress=False,
        )
    except UsageError as exc:
        logger.warning(
            "%s: no selection backtest (%s); the champion is chosen on the holdout", series, exc
        )
        return {}, {}
    summary = result.summary()
    logger.info(
        "%s: selection backtest of %d models x %d origins in %.1f s",
        series.name, len(models), len(result.origins), result.elapsed_seconds,
        extra={"series": series.name},
    )  # fmt: skip
    return summary, {**result.protocol.to_dict(), "origins": len(result.origins)}


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
    from pipeline.evaluation.backtest import ensure_naive  # the baseline every champion must beat

    names = ensure_naive(list(dict.fromkeys(models)) if models else parse_models(None))
    if holdout is not None and holdout < 1:
        raise UsageError(f"--holdout must be >= 1, got {holdout}")
    store = ArtifactStore(settings.models_dir)
    results: dict[SeriesId, TrainResult] = {}
    tasks: list[_Task] = []
    for series in series_list:
        from pipeline.process.stage import processed_path

        y = training_series(series, settings, train_window=train_window, until=until)
        meta = raw_meta(settings.data_dir, series)
        h = (
            holdout
            if holdout is not None
            else default_holdout(len(y), settings.horizon(series.freq))
        )
        if holdout is None and h < settings.horizon(series.freq):
            logger.warning(
                "%s: only %d points: holding out %d instead of the %d-step horizon",
                series.name, len(y), h, settings.horizon(series.freq),
            )  # fmt: skip
        extra: dict[str, Any] = {"simulated": bool(meta.get("simulated", False)), "holdout": h}
        if until is not None:
            extra["until"] = until.isoformat()
        results[series] = result = TrainResult(series, n_points=len(y))
        jobs = settings.n_jobs if n_jobs is None else n_jobs
        result.backtest, result.backtest_protocol = selection_backtest(
            series, y, names, settings, order=order, n_jobs=jobs
        )
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
                _Task(
                    series=series,
                    model=model,
                    params=model_params(model, order),
                    y=y,
                    holdout=h,
                    horizon=settings.horizon(series.freq),
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

    jobs = settings.n_jobs if n_jobs is None else n_jobs
    parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
    for outcome in _progress(parallel(delayed(_run_task)(t) for t in tasks), len(tasks)):
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
        _choose_champion(store, result, promote=promote)
    return list(results.values())


def _choose_champion(store: ArtifactStore, result: TrainResult, *, promote: bool) -> None:
    """Select (and unless ``promote`` is false, promote) the champion of a finished series."""
    if not result.versions:
        logger.error("%s: every model failed; the champion is unchanged", result.series.name)
        return
    from pipeline.evaluation.champion import select_champion

    try:
        trained = sorted(result.versions)
        if result.backtest:
            ordered = {m: result.backtest[m] for m in trained if m in result.backtest}
            champion, reason = select_champion(ordered)
            reason = f"selection backtest: {reason}"
        else:
            ordered = {m: result.metrics[m] for m in trained}
            champion, reason = select_champion(ordered, coverage_band=HOLDOUT_COVERAGE_BAND)
            reason = f"holdout (too little data to backtest): {reason}"
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
