"""The processed-data reader of the API: defensive reads, the checksum check, freshness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.api.data import DataCache
from pipeline.api.errors import NotServedError
from pipeline.errors import PipelineError
from tests.helpers.serving import BTC_1D, BTC_1H, processed_file


def test_missing_data_is_not_served_and_lists_what_exists(tmp_path: Path) -> None:
    cache = DataCache(tmp_path / "data")
    with pytest.raises(NotServedError, match="no processed data for bitcoin-usd-1d") as info:
        cache.frame(BTC_1D)
    assert info.value.available == []
    assert cache.freshness(BTC_1D) == {"status": "missing", "path": "processed/bitcoin-usd-1d.csv"}
    processed_file(tmp_path / "data", BTC_1H)
    with pytest.raises(NotServedError, match="available: bitcoin-usd-1h") as info:
        cache.frame(BTC_1D)
    assert info.value.available == [BTC_1H.name]


def test_latest_rows_and_freshness(tmp_path: Path) -> None:
    cache = DataCache(tmp_path / "data")
    processed_file(tmp_path / "data", BTC_1D, n=5)
    latest = cache.latest(BTC_1D, 2)
    assert [r["price"] for r in latest["rows"]] == [103.0, 104.0]
    assert latest["rows_total"] == 5 and latest["rows"][0]["imputed"] is False
    assert latest["last_ds"] == latest["rows"][-1]["ds"]
    assert cache.freshness(BTC_1D)["status"] == "ok"
    processed_file(tmp_path / "data", BTC_1H, end="2020-01-01T00:00:00")
    fresh = cache.freshness(BTC_1H)
    assert fresh["status"] == "stale" and fresh["last_ds"] == "2020-01-01T00:00:00Z"
    assert fresh["max_age_seconds"] == 3 * 3600


def test_a_file_that_does_not_match_its_checksum_is_refused(tmp_path: Path) -> None:
    cache = DataCache(tmp_path / "data")
    path = processed_file(tmp_path / "data", BTC_1H)
    assert cache.latest(BTC_1H, 1)["rows"][0]["price"] == 119.0
    path.write_text(path.read_text("utf-8").replace("119.0", "1199.0"), "utf-8")  # new size
    with pytest.raises(PipelineError, match="bitcoin-usd-1h is not usable: .*checksum differs"):
        cache.frame(BTC_1H)
    status = cache.freshness(BTC_1H)
    assert status["status"] == "unreadable" and "checksum differs" in status["error"]


def test_a_file_without_its_meta_file_is_refused(tmp_path: Path) -> None:
    path = processed_file(tmp_path / "data", BTC_1H)
    meta = path.with_name(f"{BTC_1H.name}.meta.json")
    assert json.loads(meta.read_text("utf-8"))["processed_sha256"]
    meta.unlink()
    with pytest.raises(PipelineError, match="not usable: .*processed data not found"):
        DataCache(tmp_path / "data").frame(BTC_1H)


def test_frames_are_cached_until_the_file_changes(tmp_path: Path) -> None:
    cache = DataCache(tmp_path / "data")
    processed_file(tmp_path / "data", BTC_1H, n=10)
    first = cache.frame(BTC_1H)
    assert cache.frame(BTC_1H) is first
    processed_file(tmp_path / "data", BTC_1H, n=12)
    assert len(cache.frame(BTC_1H)) == 12
