"""The read API: leaderboard, trust summary, what was served at a time, paired comparison."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.config import load_settings
from pipeline.errors import UsageError
from pipeline.ledger.db import Ledger
from pipeline.ledger.read import (
    leaderboard,
    paired_comparison,
    served_at,
    trust_status,
    trust_summaries,
    trust_summary,
)
from pipeline.ledger.record import sync
from pipeline.ledger.score import score
from tests.helpers.ledger import StoreWithIssues, build_store


@pytest.fixture
def scored(ledger: Ledger) -> StoreWithIssues:
    settings = load_settings()
    built = build_store(settings.models_dir, settings.data_dir, refreshes=4, observed=140)
    sync(ledger, built.store)
    score(ledger, settings)
    return built


def test_leaderboard_marks_the_champion_and_pairs_with_naive(
    ledger: Ledger, scored: StoreWithIssues
) -> None:
    board = leaderboard(ledger, scored.series.name, window="all", steps=True)
    assert board.champion == "naive"
    assert {r.model for r in board.rows} == {"naive", "drift"}
    naive = next(r for r in board.rows if r.model == "naive")
    assert naive.champion and naive.figures["wis_ratio"] == pytest.approx(1.0)
    assert sorted(naive.steps) == list(range(1, 11))
    assert sum(int(s["n"] or 0) for s in naive.steps.values()) == naive.figures["n"]
    only = leaderboard(ledger, scored.series.name, model="drift", window="all")
    assert [r.model for r in only.rows] == ["drift"] and only.rows[0].steps == {}
    with pytest.raises(UsageError, match="unknown window"):
        leaderboard(ledger, scored.series.name, window="5d")


def test_trust_summary_needs_enough_points(ledger: Ledger, scored: StoreWithIssues) -> None:
    settings = load_settings(trust_window="all", trust_min_points=10)
    summary = trust_summary(ledger, scored.series.name, "drift", settings)
    assert summary.n == 50 and summary.status in ("ok", "degraded")
    assert summary.coverage_95 is not None and summary.wis_ratio is not None
    strict = load_settings(trust_window="all", trust_min_points=51)
    assert trust_summary(ledger, scored.series.name, "drift", strict).status == "unknown"
    assert trust_summary(ledger, "ethereum-usd-1d", "naive", settings).status == "unknown"
    assert {(t.series, t.model) for t in trust_summaries(ledger, settings)} == {
        (scored.series.name, "naive"),
        (scored.series.name, "drift"),
    }


def test_trust_status_thresholds() -> None:
    settings = load_settings(trust_min_points=20, trust_max_wis_ratio=1.2)
    assert trust_status(0.99, 19, 1.0, settings)[0] == "unknown"
    assert trust_status(0.93, 40, 1.0, settings)[0] == "degraded"
    assert trust_status(0.99, 40, 1.3, settings)[0] == "degraded"
    assert trust_status(0.99, 40, 1.1, settings)[0] == "ok"


def test_served_at_returns_the_newest_champion_issue(
    ledger: Ledger, scored: StoreWithIssues
) -> None:
    store, series = scored.store, scored.series
    version = scored.versions["naive"]
    ids = store.list_issues(series, "naive", version)
    second = store.latest_issue(series, "naive", version)
    assert second is not None
    from pipeline.artifacts.issues import read_issue

    folder = store.version_dir(series, "naive", version)
    first = read_issue(folder, (series.name, "naive", version), ids[0])
    got = served_at(ledger, series.name, first.issued_at + timedelta(microseconds=1))
    assert got is not None and got.issue_id == ids[0] and got.model == "naive"
    assert got.forecast_sha256 == first.record.forecast_sha256 and got.version == version
    latest = served_at(ledger, series.name, second.issued_at + timedelta(days=1))
    assert latest is not None and latest.issue_id == ids[-1]
    meta = store.read_metadata(series, "naive", version)
    assert served_at(ledger, series.name, meta.created_at - timedelta(seconds=1)) is None


def test_paired_comparison_uses_common_points(ledger: Ledger, scored: StoreWithIssues) -> None:
    cmp = paired_comparison(ledger, scored.series.name, "drift", "naive", last_n=20)
    assert cmp.n == 20 and cmp.wis is not None and cmp.reference_wis is not None
    assert cmp.ratio == pytest.approx(cmp.wis / cmp.reference_wis)
    assert cmp.p_better is not None and 0 <= cmp.p_better <= 1
    same = paired_comparison(ledger, scored.series.name, "naive", "naive", last_n=1000)
    assert same.ratio == pytest.approx(1.0) and same.n == 50
    assert paired_comparison(ledger, scored.series.name, "arima", "naive", 10).n == 0
