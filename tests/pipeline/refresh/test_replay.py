"""Replaying a price history hour by hour: every hour each served version gets a new issue whose
step 1 is the next hour (the offline sample, and the real Bitstamp history when present)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.artifacts.store import ArtifactStore
from pipeline.ingest import read_csv_export
from pipeline.ingest.sample import simulate
from pipeline.refresh.stage import refresh_many
from tests.helpers.paths import SHARED_DATA
from tests.helpers.refresh import HOUR, HOURLY, HourlyFeed, feed_settings, train_on_feed

MODELS = ("naive", "drift", "garch", "conformal_naive")


def history(source: str) -> pd.Series:
    """400 training hours plus 6 to replay."""
    if source == "sample":
        frame = simulate(HOURLY, 406, pd.Timestamp("2026-11-21T12:00:00Z"), seed=42)
    else:
        path = SHARED_DATA / "bitstamp_btcusd_1h_2018-2021.csv"
        if not path.is_file():
            pytest.skip("../shared/data is absent (real price history is only beside CI)")
        frame = read_csv_export(path, "1h").iloc[-406:]
    return frame.set_index("ds")["price"]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["sample", "shared"])
def test_replayed_hour_by_hour_every_hour_gives_a_new_issue(tmp_path: Path, source: str) -> None:
    y = history(source)
    feed = HourlyFeed(tmp_path / "export.csv", y.iloc[:400])
    settings = feed_settings(feed)
    metas = train_on_feed(settings, MODELS, champion="garch")
    store = ArtifactStore(settings.models_dir)
    for ds, price in y.iloc[400:].items():
        feed.rows.append((ds, f"{price:.6f}"))
        feed.write()
        (outcome,) = refresh_many([HOURLY], settings)
        assert (outcome.status, outcome.issued) == ("refreshed", len(MODELS)), outcome.reason
        for model, meta in metas.items():
            issue = store.latest_issue(HOURLY, model, meta.version)
            assert issue is not None and issue.origin == ds.to_pydatetime()
            assert issue.forecast["ds"].iloc[0] == ds + HOUR
    champion = store.champion(HOURLY)
    assert champion is not None and (champion.model, champion.version) == (
        "garch", metas["garch"].version,
    )  # fmt: skip
