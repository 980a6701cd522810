"""Validation rules, newer-wins merge, atomic writes and meta.json of raw files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import fileio
from pipeline.errors import DataValidationError
from pipeline.ingest import raw_path, read_meta, read_raw
from pipeline.ingest.store import (
    check_prices,
    find_gaps,
    find_jumps,
    merge,
    normalize,
    write_raw,
)
from pipeline.series import SeriesId
from tests.helpers.prices import raw_price_frame

SERIES = SeriesId("bitcoin", "usd", "1h")


def frame(hours: list[int], prices: list[float] | None = None) -> pd.DataFrame:
    """Raw rows at the given hours of 2024-01-01 (UTC), priced 100 + hour unless given."""
    ds = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(hours, unit="h")
    return raw_price_frame(ds, prices if prices is not None else [100.0 + h for h in hours])


@pytest.mark.parametrize(
    ("price", "rule"),
    [
        (0.0, "zero or negative price"),
        (-5.0, "zero or negative price"),
        (float("nan"), r"missing \(NaN\) price"),
        (float("inf"), "infinite price"),
        ("abc", "non-numeric price 'abc'"),
        (None, r"missing \(NaN\) price"),
    ],
)
def test_bad_prices_are_rejected_naming_the_series_timestamp_and_rule(price, rule):
    batch = frame([0, 1, 2]).astype({"price": object})
    batch.loc[1, "price"] = price
    with pytest.raises(
        DataValidationError, match=rf"bitcoin-usd-1h: rejected, {rule}.*2024-01-01T01:00:00Z"
    ):
        check_prices(batch, "bitcoin-usd-1h")


def test_negative_volume_or_market_cap_becomes_empty_not_an_error():
    batch = frame([0, 1])
    batch["volume"] = [-1.0, 5.0]
    batch["market_cap"] = [3.0, float("inf")]
    checked = check_prices(batch, "x")
    assert checked["volume"].isna().tolist() == [True, False]
    assert checked["market_cap"].isna().tolist() == [False, True]


def test_normalize_sorts_drops_exact_duplicates_and_snaps_to_the_hour():
    batch = frame([3, 1, 2, 2, 0])
    batch["ds"] = batch["ds"] + pd.Timedelta(seconds=37)
    out = normalize(batch, "1h", "x")
    assert list(out["ds"].dt.hour) == [0, 1, 2, 3]
    assert (out["ds"].dt.second == 0).all()


def test_normalize_keeps_the_observation_nearest_the_period_start():
    ds = pd.to_datetime(
        ["2024-01-01 10:00:30", "2024-01-01 10:05:00", "2024-01-01 10:55:00"], utc=True
    )
    batch = pd.DataFrame({"ds": ds, "price": [1.0, 2.0, 3.0]})
    out = normalize(batch, "1h", "x")
    assert out["price"].tolist() == [1.0]


def test_same_timestamp_with_different_prices_cannot_be_ordered():
    batch = frame([0, 1, 1], [1.0, 2.0, 3.0])
    with pytest.raises(DataValidationError, match="unresolvable ordering.*2024-01-01T01:00:00Z"):
        normalize(batch, "1h", "x")


def test_merge_newer_wins_and_never_loses_rows():
    rng = np.random.default_rng(7)
    for _ in range(50):
        old_hours = sorted(rng.choice(200, size=rng.integers(1, 80), replace=False).tolist())
        new_hours = sorted(
            rng.choice(np.arange(max(old_hours) - 30, 260), size=20, replace=False).tolist()
        )
        new_hours = [h for h in new_hours if h >= 0] + [max(old_hours) + 1]
        new_hours = sorted(set(new_hours))
        existing = frame(old_hours)
        batch = frame(new_hours, [1000.0 + h for h in new_hours])

        merged = merge(existing, batch, "x")

        assert set(merged["ds"]) == set(existing["ds"]) | set(batch["ds"])
        assert merged["ds"].is_monotonic_increasing and merged["ds"].is_unique
        by_ds = merged.set_index("ds")["price"]
        assert (by_ds.loc[batch["ds"]].to_numpy() == batch["price"].to_numpy()).all()


def test_a_batch_older_than_the_stored_data_is_rejected():
    existing = frame(list(range(10)))
    with pytest.raises(DataValidationError, match=r"stale batch.*2024-01-01T05:00:00Z.*09:00:00Z"):
        merge(existing, frame([3, 4, 5]), "x")
    # a batch reaching the stored end is fine (an incremental run with nothing new)
    assert len(merge(existing, frame([8, 9]), "x")) == 10


def test_gaps_and_jumps_are_found():
    data = frame([0, 1, 2, 6, 7], [100.0, 101.0, 250.0, 251.0, 30.0])
    assert find_gaps(data, "1h") == [
        {"after": "2024-01-01T02:00:00Z", "before": "2024-01-01T06:00:00Z", "missing": 3}
    ]
    jumps = find_jumps(data, 0.8)
    assert [j["ds"] for j in jumps] == ["2024-01-01T02:00:00Z", "2024-01-01T07:00:00Z"]
    assert jumps[0]["change"] == pytest.approx(250 / 101 - 1, abs=1e-6)


def test_write_then_read_round_trips_and_meta_checksums_the_csv(tmp_path: Path):
    path = raw_path(tmp_path, SERIES)
    data = frame([0, 1, 2])
    data.loc[1, "volume"] = 12.5
    meta = write_raw(path, data, SERIES, {"source": "test", "simulated": False}, 0.8)

    back = read_raw(path)
    pd.testing.assert_frame_equal(back, data, check_dtype=False)
    assert str(back["ds"].dt.tz) == "UTC"
    text = path.read_text()
    assert text.splitlines()[:2] == ["ds,price,market_cap,volume", "2024-01-01T00:00:00Z,100.0,,"]
    assert meta == read_meta(path)
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (meta["rows"], meta["first_ds"], meta["last_ds"]) == (
        3,
        "2024-01-01T00:00:00Z",
        "2024-01-01T02:00:00Z",
    )


def test_an_interrupted_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = raw_path(tmp_path, SERIES)
    write_raw(path, frame([0, 1]), SERIES, {"source": "test"}, 0.8)
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_raw(path, frame([0, 1, 2, 3]), SERIES, {"source": "test"}, 0.8)

    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "bitcoin-usd-1h.csv",
        "bitcoin-usd-1h.meta.json",
    ]


def test_a_corrupt_raw_file_is_reported(tmp_path: Path):
    path = tmp_path / "x.csv"
    path.write_text("ds,price\n2024-01-01T00:00:00Z,1\n")
    with pytest.raises(DataValidationError, match="has columns"):
        read_raw(path)
    path.write_text(
        "ds,price,market_cap,volume\n2024-01-02T00:00:00Z,1,,\n2024-01-01T00:00:00Z,1,,\n"
    )
    with pytest.raises(DataValidationError, match="not sorted"):
        read_raw(path)
