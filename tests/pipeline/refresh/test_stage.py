"""The refresh stage on real files: an hourly feed extended step by step, real forecasters."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.artifacts import issues
from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from pipeline.config import Settings
from pipeline.refresh.stage import SeriesRefresh, refresh_many
from tests.helpers.fakes import register
from tests.helpers.refresh import HOUR, HOURLY, Frozen, HourlyFeed, NanAfterUpdate, train_on_feed

ISSUED_AT = datetime(2026, 11, 21, 12, 2, tzinfo=UTC)


def refresh(settings: Settings) -> SeriesRefresh:
    (outcome,) = refresh_many([HOURLY], settings, clock=lambda: ISSUED_AT)
    return outcome


def served_files(settings: Settings) -> dict[str, bytes]:
    """champion.json and every metadata.json, to show a refresh never changes them."""
    root = Path(settings.models_dir) / HOURLY.name
    paths = [root / "champion.json", *sorted(root.glob("*/*/metadata.json"))]
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def test_every_new_hour_gives_every_served_version_a_new_issue(
    feed: HourlyFeed, settings: Settings, trained: dict[str, ArtifactMetadata], store: ArtifactStore
) -> None:
    before = served_files(settings)
    for hour in range(1, 4):
        last = feed.append()
        outcome = refresh(settings)
        assert (outcome.status, outcome.issued) == ("refreshed", 2), outcome.reason
        for model, meta in trained.items():
            issue = store.latest_issue(HOURLY, model, meta.version)
            assert issue is not None
            assert issue.origin == last.to_pydatetime()
            assert issue.record.n_new == hour
            assert issue.record.last_price == pytest.approx(feed.last_price)
            assert issue.record.horizon == meta.horizon == len(issue.forecast) == 48
            assert issue.forecast["ds"].iloc[0] == last + HOUR
            assert store.list_issues(HOURLY, model, meta.version)[-1] == issue.issue_id
            assert len(store.list_issues(HOURLY, model, meta.version)) == hour
        naive = store.latest_issue(HOURLY, "naive", trained["naive"].version)
        assert naive is not None
        assert naive.forecast["mean"].iloc[0] == pytest.approx(feed.last_price)
    assert served_files(settings) == before


def test_the_update_forecasts_like_the_fitted_model_from_the_new_price(
    feed: HourlyFeed, settings: Settings, trained: dict[str, ArtifactMetadata], store: ArtifactStore
) -> None:
    feed.append(3)
    refresh(settings)
    issue = store.latest_issue(HOURLY, "drift", trained["drift"].version)
    art = store.load(HOURLY, "drift", trained["drift"].version)
    assert issue is not None
    # Same fitted spread and drift, three hours later: the training path's shape from a new
    # origin price (the intervals' relative widths are unchanged).
    ratio = issue.forecast["upper_95"] / issue.forecast["mean"]
    trained_ratio = art.forecast["upper_95"] / art.forecast["mean"]
    np.testing.assert_allclose(ratio.to_numpy(), trained_ratio.to_numpy(), rtol=1e-9)
    assert issue.forecast["mean"].iloc[0] > 0 and issue.record.n_new == 3


def test_nothing_new_is_current_and_writes_no_issue(
    settings: Settings, trained: dict[str, ArtifactMetadata], store: ArtifactStore
) -> None:
    outcome = refresh(settings)
    assert (outcome.status, outcome.issued, outcome.ok) == ("current", 0, True)
    assert {v.status for v in outcome.versions} == {"current"}
    assert outcome.reason == "2 current"
    assert store.list_issues(HOURLY, "naive", trained["naive"].version) == []


def test_nothing_trained_yet_is_fine(settings: Settings) -> None:
    outcome = refresh(settings)
    assert (outcome.status, outcome.reason) == ("current", "no trained version to refresh")


def test_a_row_without_a_price_is_refused_at_ingest_and_the_issue_stays(
    feed: HourlyFeed, settings: Settings, trained: dict[str, ArtifactMetadata], store: ArtifactStore
) -> None:
    feed.append()
    refresh(settings)
    served = store.latest_issue(HOURLY, "naive", trained["naive"].version)
    assert served is not None
    feed.append(price="")
    outcome = refresh(settings)
    assert (outcome.status, outcome.stage, outcome.ok) == ("failed", "ingest", False)
    assert outcome.reason == (
        "bitcoin-usd-1h: ingest: export.csv (coingecko-export): rejected, missing (NaN) price "
        "nan at 2026-11-21T13:00:00Z"
    )
    latest = store.latest_issue(HOURLY, "naive", trained["naive"].version)
    assert latest is not None and latest.record == served.record


def test_a_feed_that_goes_backwards_in_time_is_refused(
    feed: HourlyFeed, settings: Settings, trained: dict[str, ArtifactMetadata], store: ArtifactStore
) -> None:
    feed.append(2)
    refresh(settings)
    feed.truncate(3)
    outcome = refresh(settings)
    assert (outcome.status, outcome.stage) == ("failed", "ingest")
    assert "rejected, stale batch: its newest point" in outcome.reason
    for model, meta in trained.items():
        issue = store.latest_issue(HOURLY, model, meta.version)
        assert issue is not None and issue.record.n_new == 2


def test_a_processed_series_that_ends_before_the_served_origin_is_refused(
    settings: Settings, trained: dict[str, ArtifactMetadata], store: ArtifactStore
) -> None:
    raw = Path(settings.data_dir) / "raw" / f"{HOURLY.name}.csv"
    lines = raw.read_text().splitlines()
    raw.write_text("\n".join(lines[:-2]) + "\n")  # the raw file was replaced by an older one
    (outcome,) = refresh_many([HOURLY], settings, ingest=None)
    assert outcome.status == "failed"
    version = trained["naive"].version
    (naive,) = [v for v in outcome.versions if v.model == "naive"]
    assert naive.status == "refused"
    assert naive.reason == (
        f"bitcoin-usd-1h/naive/{version}: refused, the price feed went backwards in time: the "
        "processed series ends at 2026-11-21T09:00:00Z, before the training end "
        "2026-11-21T11:00:00Z"
    )


def test_a_gap_in_the_new_data_is_refused_and_a_short_one_is_filled(
    feed: HourlyFeed, settings: Settings, trained: dict[str, ArtifactMetadata], store: ArtifactStore
) -> None:
    version = trained["drift"].version
    feed.append(1, skip=2)  # two missing hours: forward-filled by processing (MAX_FILL_GAP=3)
    outcome = refresh(settings)
    assert outcome.status == "refreshed"
    assert store.latest_issue(HOURLY, "drift", version).record.n_new == 3  # type: ignore[union-attr]
    feed.append(1, skip=5)  # five missing hours: left missing
    outcome = refresh(settings)
    assert outcome.status == "failed"
    (drift,) = [v for v in outcome.versions if v.model == "drift"]
    assert drift.status == "refused"
    assert drift.reason.startswith(f"bitcoin-usd-1h/drift/{version}: refused, the update failed: ")
    assert "drift: update data has a gap at 2026-11-21T14:00:00+00:00 -> 2026-11-21T20:00:00" in (
        drift.reason
    )
    issue = store.latest_issue(HOURLY, "drift", version)
    assert issue is not None and issue.origin == datetime(2026, 11, 21, 14, tzinfo=UTC)


def test_a_gap_right_after_the_training_end_is_refused(
    feed: HourlyFeed, settings: Settings, trained: dict[str, ArtifactMetadata]
) -> None:
    feed.append(2, skip=4)
    outcome = refresh(settings)
    (naive,) = [v for v in outcome.versions if v.model == "naive"]
    assert naive.reason == (
        f"bitcoin-usd-1h/naive/{trained['naive'].version}: refused, gap in the new data: no "
        "price from 2026-11-21T12:00:00Z to 2026-11-21T15:00:00Z (4 missing step(s), longer than "
        "the gaps processing fills); the next training starts after it"
    )


def test_non_finite_bands_after_an_update_are_refused(
    feed: HourlyFeed, settings: Settings, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, NanAfterUpdate)
    metas = train_on_feed(settings, ("naive", "nan_after_update"))
    feed.append()
    outcome = refresh(settings)
    assert (outcome.status, outcome.issued) == ("partial", 1)
    (bad,) = outcome.problems
    version = metas["nan_after_update"].version
    assert bad.reason == (
        f"bitcoin-usd-1h/nan_after_update/{version}: refused, non-finite or non-positive "
        "forecast: lower_80 = nan at 2026-11-21T13:00:00Z"
    )
    assert store.list_issues(HOURLY, "nan_after_update", version) == []


def test_a_model_that_cannot_update_keeps_its_issue_with_the_reason(
    feed: HourlyFeed, settings: Settings, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, Frozen)
    metas = train_on_feed(settings, ("naive", "frozen"))
    feed.append()
    outcome = refresh(settings)
    assert (outcome.status, outcome.ok, outcome.reason) == (
        "refreshed",
        True,
        "1 issued, 1 not_updated",
    )
    (frozen,) = [v for v in outcome.versions if v.model == "frozen"]
    assert frozen.status == "not_updated"
    assert frozen.reason == (
        f"bitcoin-usd-1h/frozen/{metas['frozen'].version}: frozen cannot update without "
        "refitting; it keeps the issue from 2026-11-21T11:00:00+00:00 until the next training"
    )
    assert outcome.summary()["versions"][0]["model"] == "frozen"


def test_a_crash_while_writing_leaves_the_previous_issue_served(
    feed: HourlyFeed,
    settings: Settings,
    trained: dict[str, ArtifactMetadata],
    store: ArtifactStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    version = trained["naive"].version
    feed.append()
    refresh(settings)
    served = store.latest_issue(HOURLY, "naive", version)
    assert served is not None

    real_replace = os.replace

    def killed(src: str, dst: str) -> None:  # the issue's rename fails, nothing else does
        if f"/{issues.ISSUES_DIR}/" in str(dst):
            raise OSError("killed before the rename")
        real_replace(src, dst)

    monkeypatch.setattr(issues.os, "replace", killed)
    feed.append()
    outcome = refresh(settings)
    assert outcome.status == "failed"
    assert all("killed before the rename" in v.reason for v in outcome.versions)
    monkeypatch.undo()
    latest = store.latest_issue(HOURLY, "naive", version)
    assert latest is not None and latest.record == served.record
    folder = store.version_dir(HOURLY, "naive", version) / issues.ISSUES_DIR
    assert [p.name for p in folder.iterdir()] == [served.issue_id]  # no temporary left behind


def test_a_refresh_killed_mid_write_leaves_a_hidden_folder_that_is_ignored_then_pruned(
    feed: HourlyFeed, settings: Settings, trained: dict[str, ArtifactMetadata], store: ArtifactStore
) -> None:
    version = trained["naive"].version
    folder = store.version_dir(HOURLY, "naive", version) / issues.ISSUES_DIR
    partial = folder / ".tmp-20261121T130000Z-x"
    partial.mkdir(parents=True)
    (partial / "forecast.csv").write_text("ds,mean\n2026")  # what a kill -9 leaves
    assert store.latest_issue(HOURLY, "naive", version) is None  # the training issue is served
    feed.append()
    refresh(settings)
    assert os.listdir(folder) == store.list_issues(HOURLY, "naive", version)
    assert store.latest_issue(HOURLY, "naive", version) is not None


def test_old_issues_are_pruned(
    feed: HourlyFeed, trained: dict[str, ArtifactMetadata], settings: Settings, store: ArtifactStore
) -> None:
    keep2 = settings.model_copy(update={"refresh_keep_issues": 2})
    origins = []
    for _ in range(4):
        origins.append(feed.append())
        refresh(keep2)
    kept = store.list_issues(HOURLY, "drift", trained["drift"].version)
    assert [pd.Timestamp(i.split("-")[0]) for i in kept] == origins[-2:]
