"""CSV exports: format detection on committed samples and on the real files in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import get_settings
from pipeline.errors import DataValidationError, UsageError
from pipeline.ingest import SUPPORTED_FORMATS, cli, ingest_series, read_csv_export, read_raw
from pipeline.ingest.csv_formats import detect_format
from pipeline.series import SeriesId, freq_offset
from tests.helpers.paths import TEST_DATA


@pytest.mark.parametrize(
    ("name", "layout", "rows", "first", "last", "freq"),
    [
        (
            "cdd_btcusd_1h.csv",
            "cryptodatadownload",
            36,
            "2021-03-01 00:00",
            "2021-03-02 11:00",
            "1h",
        ),
        ("cdd_ethusdt_1d.csv", "cryptodatadownload", 30, "2021-01-01", "2021-01-30", "1d"),
        ("coingecko_export_btc_1d.csv", "coingecko-export", 32, "2021-06-01", "2021-07-02", "1d"),
        (
            "binance_klines_btcusdt_1h.csv",
            "binance-klines",
            30,
            "2022-02-01 00:00",
            "2022-02-02 05:00",
            "1h",
        ),
        (
            "binance_klines_btcusdt_1d_header.csv",
            "binance-klines",
            30,
            "2025-01-01",
            "2025-01-30",
            "1d",
        ),
        ("ohlcv_generic_1d.csv", "ohlcv", 30, "2020-05-01", "2020-05-30", "1d"),
    ],
)
def test_committed_samples_of_each_format(name, layout, rows, first, last, freq):
    path = TEST_DATA / name
    assert detect_format(path).name == layout

    frame = read_csv_export(path, freq)

    assert list(frame.columns) == ["ds", "price", "market_cap", "volume"]
    assert len(frame) == rows
    assert frame["ds"].is_monotonic_increasing and frame["ds"].is_unique
    assert str(frame["ds"].dt.tz) == "UTC"
    assert frame["ds"].iloc[0] == pd.Timestamp(first, tz="UTC")
    assert frame["ds"].iloc[-1] == pd.Timestamp(last, tz="UTC")
    assert (frame["price"] > 0).all() and frame["volume"].notna().all()
    # the frequency is inferred the same way when not given
    assert read_csv_export(path).equals(frame)


def test_ohlcv_price_is_the_close_and_volume_is_in_the_quote_currency():
    frame = read_csv_export(TEST_DATA / "cdd_ethusdt_1d.csv")
    raw = pd.read_csv(TEST_DATA / "cdd_ethusdt_1d.csv", skiprows=1)
    oldest = raw.iloc[-1]
    assert frame["price"].iloc[0] == oldest["close"]
    assert frame["volume"].iloc[0] == oldest["Volume USDT"]
    assert frame["market_cap"].isna().all()


def test_unix_seconds_and_milliseconds_mixed_in_one_file_are_both_read():
    frame = read_csv_export(TEST_DATA / "cdd_ethusdt_1d.csv")  # rows from 2021-01-21 are in ms
    assert (frame["ds"].diff().dropna() == pd.Timedelta("1D")).all()


def test_a_late_daily_snapshot_stays_on_its_own_day():
    # 2021-06-11's 00:00 row is missing; its snapshot was taken at 23:29:55 that day
    frame = read_csv_export(TEST_DATA / "coingecko_export_btc_1d.csv", "1d")
    assert (frame["ds"] == frame["ds"].dt.normalize()).all()
    assert pd.Timestamp("2021-06-11", tz="UTC") in set(frame["ds"])
    assert (frame["ds"].diff().dropna() == pd.Timedelta("1D")).all()


def test_unknown_format_lists_the_supported_ones():
    with pytest.raises(UsageError, match="unrecognised CSV format") as info:
        read_csv_export(TEST_DATA / "unknown_format.csv")
    for fmt in SUPPORTED_FORMATS:
        assert fmt.split(" (")[0] in str(info.value)


def test_frequency_mismatch_is_a_usage_error():
    with pytest.raises(UsageError, match=r"spaced 1d, but --freq is 1h; use --freq 1d"):
        read_csv_export(TEST_DATA / "ohlcv_generic_1d.csv", "1h")


def test_bad_rows_name_the_file_line_and_rule(tmp_path: Path):
    text = (TEST_DATA / "ohlcv_generic_1d.csv").read_text().splitlines()
    fields = text[5].split(",")
    fields[4] = "-3"
    text[5] = ",".join(fields)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(
        DataValidationError, match=r"bad.csv.*zero or negative price '-3' at 2020-05-05"
    ):
        read_csv_export(bad, "1d")

    text[5] = "not-a-date," + ",".join(fields[1:])
    bad.write_text("\n".join(text) + "\n")
    with pytest.raises(DataValidationError, match=r"unparseable timestamp at #6"):
        read_csv_export(bad, "1d")


def test_conflicting_duplicate_rows_are_rejected_and_exact_ones_dropped(tmp_path: Path):
    lines = (TEST_DATA / "ohlcv_generic_1d.csv").read_text().splitlines()
    dup = tmp_path / "dup.csv"
    dup.write_text("\n".join([*lines, lines[3]]) + "\n")
    assert len(read_csv_export(dup, "1d")) == 30
    conflicting = lines[3].rsplit(",", 2)[0] + ",1.0,1.0"
    dup.write_text("\n".join([*lines, conflicting]) + "\n")
    with pytest.raises(DataValidationError, match="unresolvable ordering"):
        read_csv_export(dup, "1d")


def test_csv_merges_into_existing_data_and_newer_rows_win(tmp_path: Path):
    series = SeriesId("bitcoin", "usd", "1d")
    settings = get_settings()
    sample = TEST_DATA / "coingecko_export_btc_1d.csv"
    head = tmp_path / "head.csv"
    lines = sample.read_text().splitlines()
    head.write_text("\n".join(lines[:21]) + "\n")  # 20 rows
    ingest_series(series, settings, source=f"csv:{head}")
    edited = lines[:]
    edited[20] = edited[20].replace(edited[20].split(",")[1], "12345.0")
    newer = tmp_path / "newer.csv"
    newer.write_text("\n".join([edited[0], *edited[20:]]) + "\n")

    result = ingest_series(series, settings, source=f"csv:{newer}")

    frame = read_raw(result.path)
    assert len(frame) == 32 and result.rows_added == 12 and result.rows_updated == 1
    assert frame.loc[frame["ds"] == pd.Timestamp("2021-06-20", tz="UTC"), "price"].item() == 12345.0


def test_an_older_csv_than_the_stored_data_is_rejected(tmp_path: Path):
    series = SeriesId("bitcoin", "usd", "1d")
    lines = (TEST_DATA / "coingecko_export_btc_1d.csv").read_text().splitlines()
    old = tmp_path / "old.csv"
    old.write_text("\n".join(lines[:11]) + "\n")
    result = ingest_series(
        series, get_settings(), source=f"csv:{TEST_DATA / 'coingecko_export_btc_1d.csv'}"
    )
    before = result.path.read_bytes()
    with pytest.raises(DataValidationError, match="stale batch"):
        ingest_series(series, get_settings(), source=f"csv:{old}")
    assert result.path.read_bytes() == before


def test_cli_csv_source_and_usage_errors(capsys):
    path = TEST_DATA / "cdd_btcusd_1h.csv"
    assert cli.main(["--source", f"csv:{path}", "--coin", "bitcoin", "--freq", "1h"]) == 0
    assert "bitcoin-usd-1h: ok, source csv:" in capsys.readouterr().out
    # unknown format and missing file: the user must change the command (exit 2)
    bad = TEST_DATA / "unknown_format.csv"
    assert cli.main(["--source", f"csv:{bad}", "--coin", "bitcoin", "--freq", "1d"]) == 2
    assert cli.main(["--source", "csv:/no/such.csv", "--coin", "bitcoin", "--freq", "1d"]) == 2
    # one CSV is one series
    assert cli.main(["--source", f"csv:{path}", "--coin", "bitcoin,ethereum", "--freq", "1h"]) == 2


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "freq", "rows", "first", "last"),
    [
        ("bitstamp_btcusd_1h_2018-2021.csv", "1h", 31842, "2018-05-15 06:00", "2021-12-31 23:00"),
        ("bitstamp_btcusd_1d_2014-2021.csv", "1d", 2591, "2014-11-28", "2021-12-31"),
        ("coingecko_btc-usd_1d_2010-2021.csv", "1d", 4185, "2010-07-18", "2021-12-31"),
        ("coingecko_eth-usd_1d_2015-2021.csv", "1d", 2338, "2015-08-07", "2021-12-31"),
    ],
)
def test_real_exports_give_the_documented_row_counts(
    shared_data: Path, capsys, name, freq, rows, first, last
):
    coin = "ethereum" if "eth" in name else "bitcoin"
    code = cli.main(["--source", f"csv:{shared_data / name}", "--coin", coin, "--freq", freq])
    assert code == 0, capsys.readouterr().out

    frame = read_raw(get_settings().data_dir / "raw" / f"{coin}-usd-{freq}.csv")
    assert len(frame) == rows
    assert frame["ds"].is_unique and frame["ds"].is_monotonic_increasing
    assert frame["ds"].iloc[0] == pd.Timestamp(first, tz="UTC")
    assert frame["ds"].iloc[-1] == pd.Timestamp(last, tz="UTC")
    step = freq_offset(freq)
    assert (frame["ds"] == frame["ds"].dt.floor(step)).all()


@pytest.mark.shared_data
def test_coingecko_late_2017_snapshots_keep_their_days(shared_data: Path):
    frame = read_csv_export(shared_data / "coingecko_btc-usd_1d_2010-2021.csv", "1d")
    june = frame[(frame["ds"] >= "2017-06-05") & (frame["ds"] <= "2017-06-09")]
    assert list(june["ds"].dt.day) == [5, 6, 7, 8, 9]
    assert june["price"].iloc[1] == pytest.approx(2903.4438)  # the 23:29:55 snapshot of 06-06
