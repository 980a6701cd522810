"""The regular grid and the gap policy: forward-filled short gaps, long gaps, 4h resampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ProcessingError, UsageError
from pipeline.process.grid import regularize
from tests.helpers.prices import daily_raw_frame, hourly_raw_frame, raw_price_frame


# -- regularize: grid and gap policy ---------------------------------------------------------------
def test_short_gaps_are_forward_filled_and_flagged():
    frame, report = regularize(daily_raw_frame(10, drop=(3, 4)), "1d", max_fill_gap=3)
    assert len(frame) == 10
    assert frame["imputed"].tolist() == [False] * 3 + [True] * 2 + [False] * 5
    assert frame["price"].tolist() == [1, 2, 3, 3, 3, 6, 7, 8, 9, 10]
    # Only the price is filled: market cap and volume stay unknown on imputed rows.
    assert frame.loc[frame["imputed"], ["market_cap", "volume"]].isna().all().all()
    assert frame["volume"].iloc[5] == 60.0
    assert report["imputed"] == 2
    assert report["gaps"] == [
        {
            "start": "2024-01-04T00:00:00+00:00",
            "end": "2024-01-05T00:00:00+00:00",
            "missing_steps": 2,
        }
    ]
    assert report["long_gaps"] == []
    assert report["train_start"] == "2024-01-01T00:00:00+00:00"


def test_gap_of_exactly_max_fill_gap_is_filled_one_more_is_long():
    frame, report = regularize(daily_raw_frame(12, drop=(2, 3, 4)), "1d", max_fill_gap=3)
    assert frame["imputed"].sum() == 3 and report["long_gaps"] == []
    frame, report = regularize(daily_raw_frame(12, drop=(2, 3, 4, 5)), "1d", max_fill_gap=3)
    assert frame["imputed"].sum() == 0
    assert report["long_gaps"][0]["missing_steps"] == 4


def test_long_gap_is_reported_left_missing_and_sets_train_start():
    # One short gap, then 7 missing days.
    raw = daily_raw_frame(30, drop=(1,) + tuple(range(10, 17)))
    frame, report = regularize(raw, "1d", max_fill_gap=3)
    assert len(frame) == 30  # the grid still has every day
    assert frame["price"].iloc[10:17].isna().all()  # never interpolated
    assert not frame["imputed"].iloc[10:17].any()
    assert frame["imputed"].iloc[1]
    assert report["long_gaps"] == [
        {
            "start": "2024-01-11T00:00:00+00:00",
            "end": "2024-01-17T00:00:00+00:00",
            "missing_steps": 7,
        }
    ]
    assert report["train_start"] == "2024-01-18T00:00:00+00:00"
    assert report["missing"] == 7
    assert (report["short_gap_count"], report["long_gap_count"]) == (1, 1)


def test_gap_lists_are_capped_but_counts_are_exact():
    raw = daily_raw_frame(1800, drop=tuple(range(1, 1800, 3)))  # 600 one-day gaps
    _, report = regularize(raw, "1d", max_fill_gap=0)
    assert report["long_gap_count"] == 600 and len(report["long_gaps"]) == 500
    assert (
        report["long_gaps"][-1]["start"] == "2028-12-03T00:00:00+00:00"
    )  # the most recent (day 1798)


def test_train_start_follows_the_last_of_several_long_gaps():
    raw = daily_raw_frame(40, drop=(*range(5, 10), *range(20, 30)))
    _, report = regularize(raw, "1d", max_fill_gap=2)
    assert [g["missing_steps"] for g in report["long_gaps"]] == [5, 10]
    assert report["train_start"] == "2024-01-31T00:00:00+00:00"


def test_max_fill_gap_zero_fills_nothing_and_negative_is_refused():
    frame, report = regularize(daily_raw_frame(6, drop=(2,)), "1d", max_fill_gap=0)
    assert not frame["imputed"].any() and len(report["long_gaps"]) == 1
    with pytest.raises(UsageError, match="max_fill_gap"):
        regularize(daily_raw_frame(6), "1d", max_fill_gap=-1)


def test_off_grid_duplicate_and_unsorted_rows_land_on_the_grid():
    # A CoinGecko-style late snapshot (23:29:55) belongs to its own day; duplicates keep the last.
    raw = raw_price_frame(
        [
            "2024-01-03T00:00:00Z",
            "2024-01-01T00:00:00Z",
            "2024-01-02T23:29:55Z",
            "2024-01-01T00:00:00Z",
        ],
        [30.0, 10.0, 20.0, 11.0],
    )
    before = raw.copy()
    frame, report = regularize(raw, "1d", max_fill_gap=3)
    pd.testing.assert_frame_equal(raw, before)  # pure: the input is untouched
    assert frame["ds"].dt.strftime("%d").tolist() == ["01", "02", "03"]
    assert frame["price"].tolist() == [11.0, 20.0, 30.0]
    assert str(frame["ds"].dt.tz) == "UTC"
    assert report["rows"] == 3 and report["imputed"] == 0


def test_bad_prices_are_refused_with_the_row():
    raw = daily_raw_frame(5)
    raw.loc[2, "price"] = -1.0
    with pytest.raises(ProcessingError, match="2024-01-03.*not a positive number"):
        regularize(raw, "1d", 3)
    with pytest.raises(ProcessingError, match="no prices"):
        regularize(raw.iloc[:0], "1d", 3)


# -- resampling ------------------------------------------------------------------------------------
def test_4h_from_hourly_takes_the_last_price_and_sums_volume():
    frame, report = regularize(hourly_raw_frame(24), "4h", max_fill_gap=3)
    assert frame["ds"].dt.hour.tolist() == [0, 4, 8, 12, 16, 20]
    assert frame["price"].tolist() == [4.0, 8.0, 12.0, 16.0, 20.0, 24.0]
    assert frame["market_cap"].tolist() == [400.0, 800.0, 1200.0, 1600.0, 2000.0, 2400.0]
    assert frame["volume"].tolist() == [4.0] * 6
    assert report["resampled"] is True and report["raw_step"] == "0 days 01:00:00"


def test_4h_drops_an_incomplete_last_bucket_and_handles_missing_hours():
    raw = hourly_raw_frame(22)  # 00:00 .. 21:00: the 20:00 bucket is not complete yet
    raw = raw.drop(index=[5, 7])  # 05:00 and 07:00 missing: the 04:00 bucket ends with 06:00
    raw = raw.drop(index=range(8, 12))  # no hour at all in the 08:00 bucket -> a 1-step gap
    frame, report = regularize(raw, "4h", max_fill_gap=3)
    assert frame["ds"].dt.hour.tolist() == [0, 4, 8, 12, 16]
    assert frame["price"].tolist() == [4.0, 7.0, 7.0, 16.0, 20.0]
    assert frame["imputed"].tolist() == [False, False, True, False, False]
    assert frame["volume"].iloc[1] == 2.0  # two hours observed in that bucket
    assert report["incomplete_last_bucket_dropped"] is True
    assert report["last_ds"] == "2024-01-01T16:00:00+00:00"


def test_4h_from_jittered_hourly_snapshots():
    # API snapshots arrive a few seconds after the hour; they still fill their hour's slot.
    raw = hourly_raw_frame(24)
    raw["ds"] = raw["ds"] + pd.to_timedelta(np.arange(24) % 7 * 5 + 3, unit="s")
    frame, report = regularize(raw, "4h", max_fill_gap=3)
    assert frame["price"].tolist() == [4.0, 8.0, 12.0, 16.0, 20.0, 24.0]
    assert report["raw_step"] == "0 days 01:00:00"
    assert report["incomplete_last_bucket_dropped"] is False


def test_upsampling_is_refused():
    with pytest.raises(UsageError, match="upsampling"):
        regularize(daily_raw_frame(10), "1h", max_fill_gap=3)
    with pytest.raises(UsageError, match="cannot build a 4h series"):
        regularize(daily_raw_frame(10), "4h", max_fill_gap=3)


def test_daily_from_daily_is_unchanged():
    raw = daily_raw_frame(15)
    frame, report = regularize(raw, "1d", max_fill_gap=3)
    assert frame["price"].tolist() == raw["price"].tolist()
    assert frame["volume"].tolist() == raw["volume"].tolist()
    assert report["resampled"] is False and report["incomplete_last_bucket_dropped"] is False
