"""Processing: regular grid, gap policy, 4h resampling, the stage's files, the CLI."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import get_settings
from pipeline.errors import ProcessingError, UsageError
from pipeline.fileio import sha256_file
from pipeline.process.cli import main
from pipeline.process.stage import (
    load_training_series,
    process_series,
    processed_path,
    raw_source_path,
    regularize,
)
from pipeline.series import SeriesId

BTC_1D = SeriesId("bitcoin", "usd", "1d")
BTC_1H = SeriesId("bitcoin", "usd", "1h")
BTC_4H = SeriesId("bitcoin", "usd", "4h")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """main() configures logging on the root logger; undo it so later tests log normally."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def raw_frame(ds, price, market_cap=None, volume=None) -> pd.DataFrame:
    n = len(price)
    return pd.DataFrame(
        {
            "ds": pd.to_datetime(pd.Series(ds), utc=True),
            "price": np.asarray(price, dtype=float),
            "market_cap": np.asarray(market_cap if market_cap is not None else [np.nan] * n),
            "volume": np.asarray(volume if volume is not None else [np.nan] * n, dtype=float),
        }
    )


def daily(n: int, drop: tuple[int, ...] = (), start: str = "2024-01-01") -> pd.DataFrame:
    """n daily rows priced 1..n (volume 10*price), minus the positions in ``drop``."""
    ds = pd.date_range(start, periods=n, freq="1D", tz="UTC")
    keep = [i for i in range(n) if i not in drop]
    price = np.arange(1.0, n + 1)
    return raw_frame(ds[keep], price[keep], price[keep] * 1000, price[keep] * 10)


def write_raw(data_dir: Path, series: SeriesId, frame: pd.DataFrame) -> Path:
    path = raw_source_path(data_dir, series)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame.copy()
    out["ds"] = out["ds"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(path, index=False)
    return path


# -- regularize: grid and gap policy ---------------------------------------------------------------
def test_short_gaps_are_forward_filled_and_flagged():
    frame, report = regularize(daily(10, drop=(3, 4)), "1d", max_fill_gap=3)
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
    frame, report = regularize(daily(12, drop=(2, 3, 4)), "1d", max_fill_gap=3)
    assert frame["imputed"].sum() == 3 and report["long_gaps"] == []
    frame, report = regularize(daily(12, drop=(2, 3, 4, 5)), "1d", max_fill_gap=3)
    assert frame["imputed"].sum() == 0
    assert report["long_gaps"][0]["missing_steps"] == 4


def test_long_gap_is_reported_left_missing_and_sets_train_start():
    raw = daily(30, drop=(1,) + tuple(range(10, 17)))  # one short gap, then 7 missing days
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
    raw = daily(1800, drop=tuple(range(1, 1800, 3)))  # 600 one-day gaps
    _, report = regularize(raw, "1d", max_fill_gap=0)
    assert report["long_gap_count"] == 600 and len(report["long_gaps"]) == 500
    assert (
        report["long_gaps"][-1]["start"] == "2028-12-03T00:00:00+00:00"
    )  # the most recent (day 1798)


def test_train_start_follows_the_last_of_several_long_gaps():
    raw = daily(40, drop=(*range(5, 10), *range(20, 30)))
    _, report = regularize(raw, "1d", max_fill_gap=2)
    assert [g["missing_steps"] for g in report["long_gaps"]] == [5, 10]
    assert report["train_start"] == "2024-01-31T00:00:00+00:00"


def test_max_fill_gap_zero_fills_nothing_and_negative_is_refused():
    frame, report = regularize(daily(6, drop=(2,)), "1d", max_fill_gap=0)
    assert not frame["imputed"].any() and len(report["long_gaps"]) == 1
    with pytest.raises(UsageError, match="max_fill_gap"):
        regularize(daily(6), "1d", max_fill_gap=-1)


def test_off_grid_duplicate_and_unsorted_rows_land_on_the_grid():
    # A CoinGecko-style late snapshot (23:29:55) belongs to its own day; duplicates keep the last.
    raw = raw_frame(
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
    raw = daily(5)
    raw.loc[2, "price"] = -1.0
    with pytest.raises(ProcessingError, match="2024-01-03.*not a positive number"):
        regularize(raw, "1d", 3)
    with pytest.raises(ProcessingError, match="no prices"):
        regularize(raw.iloc[:0], "1d", 3)


# -- resampling ------------------------------------------------------------------------------------
def hourly(n: int, start: str = "2024-01-01") -> pd.DataFrame:
    ds = pd.date_range(start, periods=n, freq="1h", tz="UTC")
    price = np.arange(1.0, n + 1)  # price k at hour k-1
    return raw_frame(ds, price, market_cap=price * 100, volume=np.ones(n))


def test_4h_from_hourly_takes_the_last_price_and_sums_volume():
    frame, report = regularize(hourly(24), "4h", max_fill_gap=3)
    assert frame["ds"].dt.hour.tolist() == [0, 4, 8, 12, 16, 20]
    assert frame["price"].tolist() == [4.0, 8.0, 12.0, 16.0, 20.0, 24.0]
    assert frame["market_cap"].tolist() == [400.0, 800.0, 1200.0, 1600.0, 2000.0, 2400.0]
    assert frame["volume"].tolist() == [4.0] * 6
    assert report["resampled"] is True and report["raw_step"] == "0 days 01:00:00"


def test_4h_drops_an_incomplete_last_bucket_and_handles_missing_hours():
    raw = hourly(22)  # 00:00 .. 21:00: the 20:00 bucket is not complete yet
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
    raw = hourly(24)
    raw["ds"] = raw["ds"] + pd.to_timedelta(np.arange(24) % 7 * 5 + 3, unit="s")
    frame, report = regularize(raw, "4h", max_fill_gap=3)
    assert frame["price"].tolist() == [4.0, 8.0, 12.0, 16.0, 20.0, 24.0]
    assert report["raw_step"] == "0 days 01:00:00"
    assert report["incomplete_last_bucket_dropped"] is False


def test_upsampling_is_refused():
    with pytest.raises(UsageError, match="upsampling"):
        regularize(daily(10), "1h", max_fill_gap=3)
    with pytest.raises(UsageError, match="cannot build a 4h series"):
        regularize(daily(10), "4h", max_fill_gap=3)


def test_daily_from_daily_is_unchanged():
    raw = daily(15)
    frame, report = regularize(raw, "1d", max_fill_gap=3)
    assert frame["price"].tolist() == raw["price"].tolist()
    assert frame["volume"].tolist() == raw["volume"].tolist()
    assert report["resampled"] is False and report["incomplete_last_bucket_dropped"] is False


# -- process_series and load_training_series -------------------------------------------------------
def test_process_series_writes_csv_and_meta_and_leaves_raw_untouched(tmp_path):
    settings = get_settings()
    raw_file = write_raw(settings.data_dir, BTC_1D, daily(120, drop=(50,)))
    raw_bytes = raw_file.read_bytes()

    result = process_series(BTC_1D, settings)

    assert raw_file.read_bytes() == raw_bytes
    assert result.path == processed_path(settings.data_dir, BTC_1D)
    assert result.path == tmp_path / "data" / "processed" / "bitcoin-usd-1d.csv"
    assert result.meta_path.name == "bitcoin-usd-1d.meta.json"
    assert (result.rows, result.imputed, result.long_gaps) == (120, 1, 0)
    processed = pd.read_csv(result.path)
    assert len(processed) == 120
    assert processed["ds"].iloc[0] == "2024-01-01T00:00:00Z"
    assert {"ds", "price", "imputed", "log_price", "log_return", "rsi_14", "sma_7"} <= set(
        processed.columns
    )
    assert processed["imputed"].dtype == bool and processed["imputed"].sum() == 1
    meta = json.loads(result.meta_path.read_text())
    assert meta["raw_sha256"] == sha256_file(raw_file)
    assert meta["processed_sha256"] == sha256_file(result.path)
    assert meta["rows"] == 120 and meta["imputed"] == 1
    assert meta["first_ds"] == "2024-01-01T00:00:00+00:00"
    assert meta["last_ds"] == "2024-04-29T00:00:00+00:00"
    assert meta["train_start"] == "2024-01-01T00:00:00+00:00"
    assert meta["stationarity"]["d"] in (0, 1, 2)
    assert {"log_price", "log_return"} <= set(meta["stationarity"])
    assert not list(result.path.parent.glob(".*.tmp"))  # no temporary files left behind


def test_process_series_rebuilds_from_raw(tmp_path):
    settings = get_settings()
    write_raw(settings.data_dir, BTC_1D, daily(40))
    first = process_series(BTC_1D, settings)
    write_raw(settings.data_dir, BTC_1D, daily(45))
    second = process_series(BTC_1D, settings)
    assert (first.rows, second.rows) == (40, 45)
    assert len(pd.read_csv(second.path)) == 45


def test_process_series_missing_raw_says_to_ingest():
    with pytest.raises(ProcessingError, match=r"raw file not found.*python -m pipeline\.ingest"):
        process_series(BTC_1D, get_settings())


@pytest.mark.parametrize(
    "text",
    ["", "ds,price\n2024-01-01T00:00:00Z,1\n", "ds,price,market_cap,volume\nyesterday,1,,\n"],
)
def test_unreadable_raw_file_is_a_clear_error(text):
    settings = get_settings()
    path = raw_source_path(settings.data_dir, BTC_1D)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ProcessingError, match="unreadable raw file"):
        process_series(BTC_1D, settings)


def test_4h_series_is_built_from_the_hourly_raw_file():
    settings = get_settings()
    write_raw(settings.data_dir, BTC_1H, hourly(48))
    result = process_series(BTC_4H, settings)
    assert result.rows == 12
    assert result.meta["raw_file"].endswith("bitcoin-usd-1h.csv")
    y = load_training_series(settings.data_dir, BTC_4H)
    assert y.iloc[:3].tolist() == [4.0, 8.0, 12.0]
    assert y.index.freqstr == "4h"


def test_load_training_series_honours_train_start(caplog):
    settings = get_settings()
    write_raw(settings.data_dir, BTC_1D, daily(60, drop=tuple(range(20, 30))))
    with caplog.at_level(logging.INFO, logger="pipeline.process.stage"):
        result = process_series(BTC_1D, settings)
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "1 gap(s) longer than max_fill_gap=3" in warning.getMessage()
    assert "training starts after it" in warning.getMessage()
    assert any("d=" in r.getMessage() and "ADF p=" in r.getMessage() for r in caplog.records)
    assert result.train_start == pd.Timestamp("2024-01-31", tz="UTC")
    assert result.training_rows == 30

    y = load_training_series(settings.data_dir, BTC_1D)
    assert y.name == "y" and y.index.name == "ds" and str(y.index.tz) == "UTC"
    assert y.index[0] == result.train_start and len(y) == 30
    assert y.index.freqstr == "D"
    assert y.iloc[0] == 31.0

    everything = load_training_series(settings.data_dir, BTC_1D, use_all=True)
    assert len(everything) == 50  # the 10 rows inside the gap are excluded, never filled
    assert everything.notna().all()
    assert everything.index.freq is None


def test_keep_all_trains_on_everything():
    settings = get_settings()
    write_raw(settings.data_dir, BTC_1D, daily(60, drop=tuple(range(20, 30))))
    result = process_series(BTC_1D, settings, keep_all=True)
    assert result.train_start == pd.Timestamp("2024-01-01", tz="UTC")
    assert result.meta["train_start_after_long_gaps"] == "2024-01-31T00:00:00+00:00"
    assert len(load_training_series(settings.data_dir, BTC_1D)) == 50


def test_load_training_series_refuses_missing_or_mismatched_files():
    settings = get_settings()
    with pytest.raises(ProcessingError, match=r"python -m pipeline\.process"):
        load_training_series(settings.data_dir, BTC_1D)
    write_raw(settings.data_dir, BTC_1D, daily(30))
    result = process_series(BTC_1D, settings)
    result.path.write_text(result.path.read_text() + "\n")  # e.g. a half-finished rebuild
    with pytest.raises(ProcessingError, match="does not match its meta file"):
        load_training_series(settings.data_dir, BTC_1D)


# -- command line ----------------------------------------------------------------------------------
def test_cli_processes_every_configured_series(monkeypatch, capsys):
    monkeypatch.setenv("COINS", "bitcoin,ethereum")
    monkeypatch.setenv("FREQUENCIES", "1d,4h")
    get_settings.cache_clear()
    data_dir = get_settings().data_dir
    for coin in ("bitcoin", "ethereum"):
        write_raw(data_dir, SeriesId(coin, "usd", "1d"), daily(40))
        write_raw(data_dir, SeriesId(coin, "usd", "1h"), hourly(200))
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in ("bitcoin-usd-1d", "bitcoin-usd-4h", "ethereum-usd-1d", "ethereum-usd-4h"):
        assert name in out
        assert (data_dir / "processed" / f"{name}.csv").is_file()
        assert (data_dir / "processed" / f"{name}.meta.json").is_file()


def test_cli_options(tmp_path):
    data_dir = tmp_path / "elsewhere"
    write_raw(data_dir, BTC_1D, daily(40, drop=(10, 11)))
    args = ["--coin", "bitcoin", "--vs", "usd", "--freq", "1d", "--data-dir", str(data_dir)]
    assert main([*args, "--max-fill-gap", "1"]) == 0
    meta = json.loads((data_dir / "processed" / "bitcoin-usd-1d.meta.json").read_text())
    assert meta["max_fill_gap"] == 1 and len(meta["long_gaps"]) == 1
    assert meta["train_start"] == "2024-01-13T00:00:00+00:00"
    assert main([*args, "--max-fill-gap", "1", "--keep-all"]) == 0
    meta = json.loads((data_dir / "processed" / "bitcoin-usd-1d.meta.json").read_text())
    assert meta["train_start"] == "2024-01-01T00:00:00+00:00" and meta["keep_all"] is True


def test_cli_exit_codes(capsys):
    assert main(["--coin", "bitcoin", "--freq", "1d"]) == 1  # no raw file yet
    assert "python -m pipeline.ingest" in capsys.readouterr().err
    assert main(["--freq", "2h"]) == 2
    assert "unknown frequency" in capsys.readouterr().err
    assert main(["--max-fill-gap", "-1"]) == 2
    assert main(["--no-such-flag"]) == 2
    assert main(["--coin", "Not A Coin"]) == 2


# -- real data -------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_real_hourly_bitstamp_file(shared_data):
    """The hourly Bitstamp export (banner line, newest first, unix seconds) -> 1h and 4h series."""
    export = pd.read_csv(shared_data / "bitstamp_btcusd_1h_2018-2021.csv", skiprows=1)
    raw = pd.DataFrame(
        {
            "ds": pd.to_datetime(export["unix"], unit="s", utc=True),
            "price": export["close"].astype(float),
            "market_cap": np.nan,
            "volume": export["Volume USD"].astype(float),
        }
    ).sort_values("ds", ignore_index=True)
    settings = get_settings()
    write_raw(settings.data_dir, BTC_1H, raw)

    hourly_result = process_series(BTC_1H, settings)
    four_hourly = process_series(BTC_4H, settings)

    assert hourly_result.rows == len(raw) == 31842  # no gaps in this export
    assert hourly_result.imputed == 0 and hourly_result.long_gaps == 0
    assert hourly_result.d == 1 and four_hourly.d == 1  # log prices have a unit root
    y1 = load_training_series(settings.data_dir, BTC_1H)
    y4 = load_training_series(settings.data_dir, BTC_4H)
    assert y1.index.freqstr == "h" and y4.index.freqstr == "4h"
    # Each 4h close is the close of the bucket's last hour (ds + 3h).
    sample = y4.index[100:110]
    np.testing.assert_allclose(y4.loc[sample], y1.loc[sample + pd.Timedelta(hours=3)])
    assert y4.index[-1] == pd.Timestamp("2021-12-31T20:00:00Z")
    assert y4.iloc[-1] == 46214.37
