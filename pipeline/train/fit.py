"""One (series, model) fit of the training stage, run in a joblib worker.

:func:`run_fit` scores the model on a holdout (fit without the last ``holdout`` points), then
fits a *fresh* forecaster on every point and writes it as a new version of the artifact store.
It never raises: a failure is recorded in the outcome so that the other fits go on.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from pipeline.errors import ForecastError
from pipeline.forecasters import make_forecaster
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)


@dataclass
class FitTask:
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
class FitOutcome:
    """What one fit produced: holdout metrics and the written version, or an error."""

    series: SeriesId
    model: str
    metrics: dict[str, float] | None = None
    metadata: ArtifactMetadata | None = None
    error: str | None = None
    seconds: float = 0.0


def run_fit(task: FitTask) -> FitOutcome:
    """Holdout score, then a fresh refit on all points, written as a version. Never raises."""
    from pipeline.evaluation.metrics import forecast_metrics

    start = time.perf_counter()
    outcome = FitOutcome(task.series, task.model)
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


def progress(outcomes: Iterator[FitOutcome], total: int) -> Iterator[FitOutcome]:
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
