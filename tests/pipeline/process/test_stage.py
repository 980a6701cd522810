"""Processing: the stage's files, rebuilt from raw; reading them back for training; the CLI."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from pipeline.config import get_settings
from pipeline.errors import ProcessingError
from pipeline.fileio import sha256_file
from pipeline.process.cli import main
from pipeline.process.stage import (
    load_training_series,
    process_series,
    processed_path,
    raw_source_path,
)
from pipeline.series import SeriesId
from tests.helpers.prices import daily_raw_frame, hourly_raw_frame, raw_price_frame, write_raw_file

BTC_1D = SeriesId("bitcoin", "usd", "1d")
BTC_1H = SeriesId("bitcoin", "usd", "1h")
BTC_4H = SeriesId("bitcoin", "usd", "4h")


#: main() configures logging on the root logger; the fixture undoes it after each test.
pytestmark = pytest.mark.usefixtures("restore_root_logger")


# -- process_series and load_training_series -------------------------------------------------------
def test_process_series_writes_csv_and_meta_and_leaves_raw_untouched(tmp_path):
    settings = get_settings()
    raw_file = write_raw_file(settings.data_dir, BTC_1D, daily_raw_frame(120, drop=(50,)))
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
    write_raw_file(settings.data_dir, BTC_1D, daily_raw_frame(40))
    first = process_series(BTC_1D, settings)
    write_raw_file(settings.data_dir, BTC_1D, daily_raw_frame(45))
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
    write_raw_file(settings.data_dir, BTC_1H, hourly_raw_frame(48))
    result = process_series(BTC_4H, settings)
    assert result.rows == 12
    assert result.meta["raw_file"].endswith("bitcoin-usd-1h.csv")
    y = load_training_series(settings.data_dir, BTC_4H)
    assert y.iloc[:3].tolist() == [4.0, 8.0, 12.0]
    assert y.index.freqstr == "4h"


def test_load_training_series_honours_train_start(caplog):
    settings = get_settings()
    write_raw_file(settings.data_dir, BTC_1D, daily_raw_frame(60, drop=tuple(range(20, 30))))
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
    write_raw_file(settings.data_dir, BTC_1D, daily_raw_frame(60, drop=tuple(range(20, 30))))
    result = process_series(BTC_1D, settings, keep_all=True)
    assert result.train_start == pd.Timestamp("2024-01-01", tz="UTC")
    assert result.meta["train_start_after_long_gaps"] == "2024-01-31T00:00:00+00:00"
    assert len(load_training_series(settings.data_dir, BTC_1D)) == 50


def test_load_training_series_refuses_missing_or_mismatched_files():
    settings = get_settings()
    with pytest.raises(ProcessingError, match=r"python -m pipeline\.process"):
        load_training_series(settings.data_dir, BTC_1D)
    write_raw_file(settings.data_dir, BTC_1D, daily_raw_frame(30))
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
        write_raw_file(data_dir, SeriesId(coin, "usd", "1d"), daily_raw_frame(40))
        write_raw_file(data_dir, SeriesId(coin, "usd", "1h"), hourly_raw_frame(200))
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in ("bitcoin-usd-1d", "bitcoin-usd-4h", "ethereum-usd-1d", "ethereum-usd-4h"):
        assert name in out
        assert (data_dir / "processed" / f"{name}.csv").is_file()
        assert (data_dir / "processed" / f"{name}.meta.json").is_file()


def test_cli_options(tmp_path):
    data_dir = tmp_path / "elsewhere"
    write_raw_file(data_dir, BTC_1D, daily_raw_frame(40, drop=(10, 11)))
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
    raw = raw_price_frame(
        pd.to_datetime(export["unix"], unit="s", utc=True),
        export["close"],
        volume=export["Volume USD"],
    ).sort_values("ds", ignore_index=True)
    settings = get_settings()
    write_raw_file(settings.data_dir, BTC_1H, raw)

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
