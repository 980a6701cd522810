"""Replaying a price history hour by hour: every hour each served version gets a new issue whose
step 1 is the next hour, and the API, reloaded, answers from it (the offline sample, and the real
Bitstamp history when present)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from pipeline.api.registry import RegistryHolder
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
    api = RegistryHolder(store)
    api.load_initial()
    for ds, price in y.iloc[400:].items():
        feed.rows.append((ds, f"{price:.6f}"))
        feed.write()
        (outcome,) = refresh_many([HOURLY], settings)
        assert (outcome.status, outcome.issued) == ("refreshed", len(MODELS)), outcome.reason
        for model, meta in metas.items():
            issue = store.latest_issue(HOURLY, model, meta.version)
            assert issue is not None and issue.origin == ds.to_pydatetime()
            assert issue.forecast["ds"].iloc[0] == ds + HOUR
        # The API notices the new issues and, two minutes after the new price, answers from it:
        # step 1 is the next hour, the whole horizon is ahead, nothing is stale.
        assert api.needs_reload() and api.reload().outcome == "success"
        served = api.registry.get(HOURLY)
        now = ds.to_pydatetime() + timedelta(minutes=2)
        body = json.loads(served.predict_json(3, now=now))
        assert served.origin == ds.to_pydatetime()
        assert [p["timestamp"] for p in body["forecasts"]] == [
            f"{ds + HOUR * k:%Y-%m-%dT%H:%M:%SZ}" for k in (1, 2, 3)
        ]
        assert [p["step"] for p in body["forecasts"]] == [1, 2, 3]
        assert body["last_price"] == pytest.approx(price, rel=1e-6)
        assert body["freshness"]["stale"] is False
        assert body["freshness"]["steps_available"] == served.horizon
    champion = store.champion(HOURLY)
    assert champion is not None and (champion.model, champion.version) == (
        "garch", metas["garch"].version,
    )  # fmt: skip
