"""The training stage: holdout metrics, refit, artifacts, failures, the champion, --until."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from pipeline.artifacts.store import CHAMPION_FILE, ArtifactStore
from pipeline.config import Settings, get_settings
from pipeline.errors import ProcessingError, UsageError
from pipeline.evaluation.champion import training_champion
from pipeline.evaluation.metrics import METRIC_KEYS, forecast_metrics
from pipeline.forecasters import make_forecaster
from pipeline.series import SeriesId
from pipeline.train import stage as train
from tests.helpers import fakes
from tests.helpers.prices import random_walk_prices
from tests.helpers.processed import write_processed

SERIES = SeriesId("bitcoin", "usd", "1d")


def test_trains_scores_refits_and_promotes(settings: Settings, y: pd.Series) -> None:
    result = train.train_series(SERIES, settings, models=["naive", "drift"], holdout=10)
    assert result.failures == {}
    assert set(result.versions) == {"naive", "drift"}
    assert result.n_points == len(y)
    # holdout metrics are exactly those of a model fitted without the last 10 points
    naive = make_forecaster("naive").fit(y.iloc[:-10])
    expected = forecast_metrics(y.iloc[-10:].to_numpy(), naive.predict(10), y.iloc[:-10])
    assert result.metrics["naive"] == pytest.approx(expected, nan_ok=True)
    # ... while the artifact was refitted on every point
    store = ArtifactStore(settings.models_dir)
    meta = result.versions["naive"]
    assert meta.training.n_points == len(y) and meta.training.last_ds == y.index[-1]
    assert meta.metrics["mase"] == pytest.approx(expected["mase"])
    assert meta.horizon == settings.horizon("1d")
    assert meta.data_source == "sample"
    assert meta.extra["simulated"] is True and meta.extra["holdout"] == 10
    # the selection backtest's summary travels with every version
    assert meta.extra["backtest"]["metrics"] == pytest.approx(result.backtest["naive"])
    assert meta.extra["backtest"]["protocol"]["origins"] >= 1
    assert meta.data_file is not None and meta.data_file.endswith("bitcoin-usd-1d.csv")
    loaded = store.load(SERIES, "naive", meta.version, with_model=True)
    assert loaded.forecaster is not None
    assert loaded.forecast["mean"].iloc[0] == pytest.approx(float(y.iloc[-1]))
    # champion: chosen by the selection rule on the backtest summary and its per-origin
    # scores (the significance tests), not on the one holdout
    assert result.evidence is not None and set(result.evidence.scores) == {"naive", "drift"}
    best, reason = training_champion(
        result.versions, result.backtest, result.metrics, evidence=result.evidence
    )
    assert reason.startswith("selection backtest: ")
    assert (result.champion, result.champion_reason) == (best, reason)
    assert result.champion_reason.startswith("selection backtest: ")
    champ = store.champion(SERIES)
    assert champ is not None
    assert (champ.model, champ.version) == (best, result.versions[best].version)


def test_too_short_to_backtest_falls_back_to_the_holdout(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fewer points than one 30-day horizon plus history: no selection backtest
    write_processed(settings.data_dir, random_walk_prices(30), SERIES)
    result = train.train_series(SERIES, settings, models=["naive", "drift"], holdout=5)
    assert result.backtest == {}
    assert result.champion is not None
    assert result.champion_reason.startswith("holdout (too little data to backtest): ")


def test_default_holdout_is_the_served_horizon(settings: Settings, y: pd.Series) -> None:
    result = train.train_series(SERIES, settings, models=["naive"])
    assert result.versions["naive"].extra["holdout"] == settings.horizon("1d")


def test_naive_always_competes(settings: Settings, y: pd.Series) -> None:
    result = train.train_series(SERIES, settings, models=["drift"], holdout=10)
    assert set(result.versions) == {"naive", "drift"}


def test_a_failing_model_is_recorded_and_the_rest_is_promoted(
    settings: Settings,
    y: pd.Series,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fakes.register(monkeypatch, fakes.Broken)
    result = train.train_series(SERIES, settings, models=["naive", "broken"], holdout=10)
    assert result.failures == {"broken": "RuntimeError: simulated fit failure"}
    assert set(result.versions) == {"naive"}
    assert result.champion == "naive"
    assert ArtifactStore(settings.models_dir).list_versions(SERIES, "broken") == []
    champ = ArtifactStore(settings.models_dir).champion(SERIES)
    assert champ is not None and champ.model == "naive"
    assert "broken failed: RuntimeError: simulated fit failure" in caplog.text


def test_every_model_failing_leaves_the_champion_unchanged(
    settings: Settings, y: pd.Series, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = train.train_series(SERIES, settings, models=["naive"], holdout=10)
    pointer = settings.models_dir / SERIES.name / CHAMPION_FILE
    before = pointer.read_bytes()
    fakes.register(monkeypatch, fakes.Broken)
    monkeypatch.setattr(fakes.Naive, "_fit", fakes.Broken._fit)  # naive breaks too
    result = train.train_series(SERIES, settings, models=["broken"], holdout=10)
    assert not result.ok and result.champion is None
    assert set(result.failures) == {"naive", "broken"}
    assert pointer.read_bytes() == before
    assert first.champion == "naive"


def test_too_short_for_the_holdout_is_a_recorded_failure(settings: Settings) -> None:
    write_processed(settings.data_dir, random_walk_prices(12), SERIES)
    result = train.train_series(SERIES, settings, models=["naive"], holdout=12)
    assert "cannot hold out 12" in result.failures["naive"]
    assert not result.ok


def test_until_excludes_data_at_and_after_the_date(settings: Settings, y: pd.Series) -> None:
    until = datetime(2021, 5, 1, tzinfo=UTC)
    # poison the future: any look-ahead would show up in the metrics and the forecast
    poisoned = y.copy()
    poisoned[poisoned.index >= until] = 1e9
    write_processed(settings.data_dir, poisoned, SERIES)
    result = train.train_series(SERIES, settings, models=["naive"], until=until, holdout=10)
    meta = result.versions["naive"]
    assert meta.training.last_ds == datetime(2021, 4, 30, tzinfo=UTC)
    assert meta.training.n_points == int((y.index < until).sum())
    assert meta.last_price == pytest.approx(float(y[y.index < until].iloc[-1]))
    assert meta.metrics["mae"] is not None and meta.metrics["mae"] < 1e6
    assert meta.extra["until"].startswith("2021-05-01")


def test_train_window_keeps_the_last_n_points(settings: Settings, y: pd.Series) -> None:
    result = train.train_series(SERIES, settings, models=["naive"], train_window=50, holdout=5)
    meta = result.versions["naive"]
    assert meta.training.n_points == 50
    assert meta.training.first_ds == y.index[-50]


def test_training_starts_after_the_last_long_gap(settings: Settings) -> None:
    prices = random_walk_prices(200)
    write_processed(settings.data_dir, prices, SERIES, train_start=prices.index[80])
    result = train.train_series(SERIES, settings, models=["naive"], holdout=5)
    assert result.versions["naive"].training.first_ds == prices.index[80]


def test_until_before_any_data_is_a_usage_error(settings: Settings, y: pd.Series) -> None:
    with pytest.raises(UsageError, match="no processed data before 2000-01-01"):
        train.train_series(
            SERIES, settings, models=["naive"], until=datetime(2000, 1, 1, tzinfo=UTC)
        )


def test_no_promote_writes_versions_only(settings: Settings, y: pd.Series) -> None:
    result = train.train_series(SERIES, settings, models=["naive"], holdout=5, promote=False)
    assert result.champion == "naive"
    assert ArtifactStore(settings.models_dir).champion(SERIES) is None
    assert len(ArtifactStore(settings.models_dir).list_versions(SERIES, "naive")) == 1


def test_missing_raw_meta_means_unknown_source(settings: Settings) -> None:
    write_processed(settings.data_dir, random_walk_prices(60), SERIES, source=None)
    result = train.train_series(SERIES, settings, models=["naive"], holdout=5)
    assert result.versions["naive"].data_source is None
    assert result.versions["naive"].extra["simulated"] is False


def test_metrics_are_finite_numbers(settings: Settings, y: pd.Series) -> None:
    result = train.train_series(SERIES, settings, models=["naive", "drift"], holdout=10)
    for model in ("naive", "drift"):
        holdout = result.metrics[model]
        assert sorted(holdout) == sorted(METRIC_KEYS)  # every documented metric, no other
        assert all(isinstance(v, float) and np.isfinite(v) for v in holdout.values()), holdout
        assert result.versions[model].metrics == pytest.approx(holdout)
        backtest = result.backtest[model]
        assert set(METRIC_KEYS) <= set(backtest)
        assert np.isfinite([backtest[k] for k in METRIC_KEYS]).all(), backtest
        assert backtest["n_folds"] >= 1 and backtest["failed_folds"] == 0
    # values a forecast cannot get wrong: shares are in [0, 1], errors and widths positive
    naive = result.metrics["naive"]
    assert 0 <= naive["coverage_80"] <= naive["coverage_95"] <= 1
    assert 0 < naive["width_80"] < naive["width_95"]
    assert naive["mae"] > 0 and naive["rmse"] >= naive["mae"] and naive["mase"] > 0


def test_short_history_holds_out_a_quarter(settings: Settings) -> None:
    write_processed(settings.data_dir, random_walk_prices(40), SERIES)
    result = train.train_series(SERIES, settings, models=["naive"])
    assert result.versions["naive"].extra["holdout"] == 10
    assert train.default_holdout(1000, 30) == 30 and train.default_holdout(2, 30) == 1


@pytest.mark.slow  # starts joblib worker processes
def test_parallel_fits_across_series(settings: Settings) -> None:
    """Two series x two models on two worker processes (real joblib/loky)."""
    hourly = SeriesId("bitcoin", "usd", "1h")
    write_processed(settings.data_dir, random_walk_prices(150), SERIES)
    write_processed(settings.data_dir, random_walk_prices(300, freq="1h", seed=1), hourly)
    results = train.train_many(
        [SERIES, hourly], settings, models=["naive", "drift"], holdout=10, n_jobs=2
    )
    assert [r.series for r in results] == [SERIES, hourly]
    store = ArtifactStore(settings.models_dir)
    for result in results:
        assert result.failures == {} and set(result.versions) == {"naive", "drift"}
        assert store.champion(result.series) is not None
    assert results[1].versions["naive"].horizon == settings.horizon("1h")


@pytest.mark.slow
def test_fixed_arima_order_reaches_the_artifact_and_reloads(
    settings: Settings, y: pd.Series
) -> None:
    result = train.train_series(SERIES, settings, models=["arima"], order=(1, 1, 0), holdout=10)
    assert result.failures == {}
    meta = result.versions["arima"]
    assert list(meta.params["order"]) == [1, 1, 0]
    loaded = ArtifactStore(settings.models_dir).load(SERIES, "arima", meta.version, with_model=True)
    assert loaded.forecaster is not None
    pd.testing.assert_frame_equal(
        loaded.forecaster.predict(meta.horizon), loaded.forecast, check_freq=False
    )


def test_missing_processed_data_is_a_processing_error() -> None:
    with pytest.raises(ProcessingError, match="processed data not found"):
        train.training_series(SERIES, get_settings())


def test_the_served_horizon_reaches_the_calibrated_models(
    y: pd.Series, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HORIZON_1D", "7")
    get_settings.cache_clear()
    settings = get_settings()
    result = train.train_series(SERIES, settings, models=["conformal_naive"], holdout=7)
    assert result.failures == {}
    meta = result.versions["conformal_naive"]
    assert meta.horizon == 7 and meta.params["horizon"] == 7
    assert "horizon" not in result.versions["naive"].params
