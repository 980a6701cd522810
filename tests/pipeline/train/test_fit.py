"""One (series, model) fit: holdout metrics, a fresh refit written as a version, never raising."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.artifacts.store import ArtifactStore
from pipeline.evaluation.metrics import forecast_metrics
from pipeline.forecasters import make_forecaster
from pipeline.series import SeriesId
from pipeline.train.fit import FitOutcome, FitTask, progress, run_fit
from tests.helpers import fakes
from tests.helpers.prices import random_walk_prices

SERIES = SeriesId("bitcoin", "usd", "1d")


def _task(tmp_path: Path, model: str = "naive", n: int = 100, holdout: int = 10) -> FitTask:
    return FitTask(
        series=SERIES,
        model=model,
        params={},
        y=random_walk_prices(n),
        holdout=holdout,
        horizon=7,
        models_dir=tmp_path / "models",
        data_file=None,
        data_source="sample",
        extra={"holdout": holdout},
    )


def test_scores_the_holdout_then_writes_a_refit_on_every_point(tmp_path: Path) -> None:
    task = _task(tmp_path)
    outcome = run_fit(task)
    assert outcome.error is None and outcome.metadata is not None
    train, actual = task.y.iloc[:-10], task.y.iloc[-10:]
    expected = forecast_metrics(
        actual.to_numpy(), make_forecaster("naive").fit(train).predict(10), train
    )
    assert outcome.metrics == pytest.approx(expected)
    meta = outcome.metadata
    assert (meta.training.n_points, meta.horizon, meta.data_source) == (100, 7, "sample")
    loaded = ArtifactStore(task.models_dir).load(SERIES, "naive", meta.version, with_model=True)
    assert loaded.forecast["mean"].iloc[0] == pytest.approx(float(task.y.iloc[-1]))


def test_failures_are_recorded_never_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = run_fit(_task(tmp_path, n=10, holdout=10))
    assert short.metadata is None
    assert short.error == (
        "ForecastError: naive: 10 points cannot hold out 10; lower --holdout or use more data"
    )
    fakes.register(monkeypatch, fakes.Broken)
    broken = run_fit(_task(tmp_path, model="broken"))
    assert broken.error == "RuntimeError: simulated fit failure"
    assert ArtifactStore(tmp_path / "models").list_versions(SERIES, "broken") == []


def test_progress_logs_each_finished_fit_without_a_terminal(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    caplog.set_level("INFO", logger="pipeline.train.fit")
    outcomes = [FitOutcome(SERIES, "naive", seconds=0.5), FitOutcome(SERIES, "drift", error="x")]
    assert list(progress(iter(outcomes), 2)) == outcomes
    assert [r.getMessage() for r in caplog.records] == [
        "fit 1/2 done: bitcoin-usd-1d naive (0.5s, ok)",
        "fit 2/2 done: bitcoin-usd-1d drift (0.0s, failed)",
    ]


def test_progress_bar_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    outcomes = [FitOutcome(SERIES, "naive"), FitOutcome(SERIES, "drift")]
    assert list(progress(iter(outcomes), 2)) == outcomes
    err = capsys.readouterr().err
    assert "training" in err and "2/2" in err
