"""Recording the store's issues: every issue once, whole, with its steps and checksums."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.config import get_settings
from pipeline.ledger.db import Ledger
from pipeline.ledger.record import sync
from pipeline.ledger.schema import issues, steps
from tests.helpers.ledger import build_store


def _counts(ledger: Ledger) -> tuple[int, int]:
    with ledger.reader() as conn:
        return (
            conn.execute(select(func.count()).select_from(issues)).scalar_one(),
            conn.execute(select(func.count()).select_from(steps)).scalar_one(),
        )


def test_sync_records_every_issue_once(ledger: Ledger) -> None:
    settings = get_settings()
    built = build_store(settings.models_dir, settings.data_dir, refreshes=3, horizon=10)
    result = sync(ledger, built.store)
    # 2 models x (training issue + 3 refresh issues), 10 steps each
    assert result.recorded == {built.series.name: 8}
    assert _counts(ledger) == (8, 80)
    again = sync(ledger, built.store)
    assert again.total == 0 and _counts(ledger) == (8, 80)


def test_recorded_issue_matches_the_store(ledger: Ledger) -> None:
    settings = get_settings()
    built = build_store(settings.models_dir, settings.data_dir, refreshes=1)
    sync(ledger, built.store)
    version = built.versions["drift"]
    latest = built.store.latest_issue(built.series, "drift", version)
    assert latest is not None
    with ledger.reader() as conn:
        row = conn.execute(select(issues).where(issues.c.issue_id == latest.issue_id)).one()
        path = conn.execute(
            select(steps).where(steps.c.issue == row.id).order_by(steps.c.step)
        ).all()
        champions = {
            r.model: r.champion
            for r in conn.execute(select(issues.c.model, issues.c.champion).distinct())
        }
    assert (row.series, row.model, row.version) == (built.series.name, "drift", version)
    assert row.forecast_sha256 == latest.record.forecast_sha256
    assert len(row.model_sha256) == 64 and Path(row.path) == latest.path
    assert [p.step for p in path] == list(range(1, len(latest.forecast) + 1))
    assert [p.mean for p in path] == pytest.approx(latest.forecast["mean"].tolist(), rel=1e-12)
    assert [p.upper_95 for p in path] == pytest.approx(latest.forecast["upper_95"].tolist())
    assert champions == {"naive": True, "drift": False}


def test_new_issues_are_caught_up_after_an_outage(ledger: Ledger) -> None:
    """Issues written while the ledger was not synced are recorded by the next sync."""
    settings = get_settings()
    built = build_store(settings.models_dir, settings.data_dir, refreshes=1)
    sync(ledger, built.store)
    for model, version in built.versions.items():
        info = built.store.latest_issue(built.series, model, version)
        assert info is not None
        built.store.write_issue(
            built.series, model, version, info.forecast, origin=info.origin,
            last_price=info.record.last_price, n_new=2,
        )  # fmt: skip
    assert sync(ledger, built.store).total == 2
    assert _counts(ledger)[0] == 6


def test_a_corrupt_issue_is_skipped_and_reported(ledger: Ledger) -> None:
    settings = get_settings()
    built = build_store(settings.models_dir, settings.data_dir, refreshes=2)
    version = built.versions["naive"]
    first = built.store.list_issues(built.series, "naive", version)[0]
    folder = built.store.version_dir(built.series, "naive", version) / "issues" / first
    (folder / "forecast.csv").write_text("ds,mean\n")
    result = sync(ledger, built.store)
    assert result.total == 5
    assert len(result.skipped) == 1 and "checksum mismatch" in result.skipped[0]
