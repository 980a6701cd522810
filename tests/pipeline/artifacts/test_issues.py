"""Forecast issues of a version: atomic writes, verified reads, fallbacks, pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from pipeline.artifacts.issues import (
    ISSUE_FILE,
    ISSUES_DIR,
    TRAINING_ISSUE,
    new_issue_id,
    read_issue,
    training_issue,
)
from pipeline.artifacts.store import ArtifactStore
from pipeline.errors import ArtifactError
from pipeline.forecasters import make_forecaster
from pipeline.series import SeriesId
from tests.helpers.artifacts import write_version
from tests.helpers.prices import random_walk_prices

BTC = SeriesId("bitcoin", "usd", "1d")
T0 = datetime(2026, 11, 21, tzinfo=UTC)


def issue(store: ArtifactStore, version: str, days: int, model: str = "naive") -> str:
    """Write an issue whose origin is ``days`` after the training end of a 200-day series."""
    y = random_walk_prices(200 + days)
    fitted = make_forecaster(model).fit(y)
    frame = fitted.predict(5)
    origin = y.index[-1].to_pydatetime()
    info = store.write_issue(
        BTC, model, version, frame, origin=origin, last_price=float(y.iloc[-1]), n_new=days,
        issued_at=T0 + timedelta(hours=days),
    )  # fmt: skip
    return info.issue_id


def test_an_issue_round_trips_and_is_the_latest(store: ArtifactStore) -> None:
    meta = write_version(store, BTC, horizon=5)
    assert store.latest_issue(BTC, "naive", meta.version) is None
    first = issue(store, meta.version, 1)
    second = issue(store, meta.version, 2)
    assert store.list_issues(BTC, "naive", meta.version) == [first, second]
    latest = store.latest_issue(BTC, "naive", meta.version)
    assert latest is not None and latest.issue_id == second
    record = latest.record
    assert (record.series, record.model, record.version, record.n_new) == (
        BTC.name, "naive", meta.version, 2,
    )  # fmt: skip
    assert record.origin == datetime(2021, 7, 21, tzinfo=UTC)
    assert record.issued_at == T0 + timedelta(hours=2)
    assert (record.horizon, record.levels) == (5, [80, 95])
    assert list(latest.forecast.columns) == [
        "ds", "mean", "lower_80", "upper_80", "lower_95", "upper_95",
    ]  # fmt: skip
    assert latest.forecast["ds"].iloc[0] == pd.Timestamp("2021-07-22", tz="UTC")
    assert latest.path == store.version_dir(BTC, "naive", meta.version) / ISSUES_DIR / second


def test_issue_ids_sort_by_origin_then_issue_time() -> None:
    early = new_issue_id(T0, T0 + timedelta(hours=5))
    late = new_issue_id(T0 + timedelta(hours=1), T0)
    assert early.startswith("20261121T000000Z-20261121T050000000000Z-")
    assert sorted([late, early]) == [early, late]


def test_a_tampered_newest_issue_is_skipped_for_the_previous_one(
    store: ArtifactStore, caplog: pytest.LogCaptureFixture
) -> None:
    meta = write_version(store, BTC, horizon=5)
    first = issue(store, meta.version, 1)
    second = issue(store, meta.version, 2)
    forecast = store.version_dir(BTC, "naive", meta.version) / ISSUES_DIR / second / "forecast.csv"
    forecast.write_text(forecast.read_text().replace("2021-07-22", "2021-07-23", 1))
    latest = store.latest_issue(BTC, "naive", meta.version)
    assert latest is not None and latest.issue_id == first
    assert f"skipping issue {second}: " in caplog.text and "checksum mismatch" in caplog.text


def test_an_issue_without_its_record_or_copied_elsewhere_is_refused(store: ArtifactStore) -> None:
    meta = write_version(store, BTC, horizon=5)
    folder = store.version_dir(BTC, "naive", meta.version)
    only = issue(store, meta.version, 1)
    ident = (BTC.name, "naive", meta.version)
    with pytest.raises(ArtifactError, match="describes bitcoin-usd-1d/naive/.*not this folder"):
        read_issue(folder, (BTC.name, "drift", meta.version), only)
    (folder / ISSUES_DIR / only / ISSUE_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"issue\.json is missing"):
        read_issue(folder, ident, only)
    assert store.latest_issue(BTC, "naive", meta.version) is None


def test_the_training_issue_describes_the_versions_own_forecast(store: ArtifactStore) -> None:
    meta = write_version(store, BTC, horizon=5)
    art = store.load(BTC, "naive", meta.version)
    current = store.current_issue(art)
    assert current.issue_id == TRAINING_ISSUE
    assert current.origin == meta.training.last_ds and current.issued_at == meta.created_at
    assert current.record.forecast_sha256 == meta.files["forecast.csv"]
    assert current.forecast is art.forecast and training_issue(art).record == current.record
    newer = issue(store, meta.version, 1)
    assert store.current_issue(art).issue_id == newer


def test_prune_keeps_the_newest_issues_and_removes_leftover_temporaries(
    store: ArtifactStore,
) -> None:
    meta = write_version(store, BTC, horizon=5)
    ids = [issue(store, meta.version, d) for d in (1, 2, 3)]
    base = store.version_dir(BTC, "naive", meta.version) / ISSUES_DIR
    (base / ".tmp-left-by-a-kill").mkdir()
    removed = store.prune_issues(BTC, "naive", meta.version, keep=2)
    assert sorted(p.name for p in removed) == sorted([".tmp-left-by-a-kill", ids[0]])
    assert sorted(p.name for p in base.iterdir()) == ids[1:]


def test_served_versions_are_the_champions_and_the_latest_of_the_others(
    store: ArtifactStore,
) -> None:
    assert store.served_versions(BTC) == []
    old_naive = write_version(store, BTC, "naive", promote=True)
    write_version(store, BTC, "naive")  # newer, but the champion's model is served as promoted
    drift = write_version(store, BTC, "drift")
    newer_drift = write_version(store, BTC, "drift")
    assert drift.version < newer_drift.version
    assert store.served_versions(BTC) == [
        ("naive", old_naive.version),
        ("drift", newer_drift.version),
    ]
