"""The offline simulated sample and the CLI's settings-driven defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pipeline.config import get_settings
from pipeline.errors import UsageError
from pipeline.ingest import cli, ingest_series, raw_path, read_meta, read_raw
from pipeline.ingest.sample import simulate
from pipeline.series import SeriesId

BTC_1D = SeriesId("bitcoin", "usd", "1d")
BTC_1H = SeriesId("bitcoin", "usd", "1h")
END = datetime(2024, 6, 1, 13, 45, tzinfo=UTC)


def test_sample_is_deterministic_for_a_seed():
    a = simulate(BTC_1D, 500, END, seed=42)
    b = simulate(BTC_1D, 500, END, seed=42)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["price"], simulate(BTC_1D, 500, END, seed=43)["price"])
    eth = simulate(SeriesId("ethereum", "usd", "1d"), 500, END, seed=42)
    assert not np.allclose(a["price"] / a["price"].iloc[0], eth["price"] / eth["price"].iloc[0])


@pytest.mark.parametrize(("freq", "step"), [("1d", "1D"), ("1h", "1h")])
def test_sample_grid_ends_at_the_floored_end(freq: str, step: str):
    out = simulate(SeriesId("bitcoin", "usd", freq), 100, END, seed=1)
    assert len(out) == 100
    assert out["ds"].iloc[-1] == pd.Timestamp(END).floor(step)
    assert (out["ds"].diff().dropna() == pd.Timedelta(step)).all()
    assert (out["price"] > 0).all()


def test_sample_has_heavy_tails_and_volatility_clustering():
    prices = simulate(BTC_1D, 3000, END, seed=42)["price"]
    returns = np.diff(np.log(prices.to_numpy()))[1:]
    z = (returns - returns.mean()) / returns.std()
    excess_kurtosis = float(np.mean(z**4) - 3)
    squared = z**2
    acf1 = float(np.corrcoef(squared[:-1], squared[1:])[0, 1])
    assert excess_kurtosis > 1.0  # a normal walk has ~0
    assert acf1 > 0.05  # an i.i.d. walk has ~0
    assert 0.015 < returns.std() < 0.08  # crypto-like daily volatility


def test_every_timeframe_of_a_coin_is_one_market():
    settings = get_settings()
    daily = read_raw(ingest_series(BTC_1D, settings, source="sample", days=30, now=END).path)
    # ingested three hours later the same day, over a shorter history
    later = END + timedelta(hours=3)
    hourly = read_raw(ingest_series(BTC_1H, settings, source="sample", days=10, now=later).path)
    assert hourly["ds"].iloc[-1] == pd.Timestamp("2024-06-01T16:00:00Z")
    both = daily.merge(hourly, on="ds", suffixes=("_1d", "_1h"))
    assert len(both) == 10  # the 00:00 UTC of each of the hourly sample's days
    assert both["price_1d"].tolist() == both["price_1h"].tolist()
    # a daily row's volume is that of the 24 hours that end at its timestamp
    hours = hourly.set_index("ds")["volume"]
    day = pd.Timestamp("2024-05-31", tz="UTC")
    window = hours[day - timedelta(hours=23) : day]
    assert len(window) == 24
    volume = daily.set_index("ds").loc[day, "volume"]
    assert volume == pytest.approx(window.sum(), rel=1e-6)


@pytest.mark.parametrize("freq", ["1d", "1h"])
def test_a_longer_sample_extends_the_same_path_into_the_past(freq: str):
    series = SeriesId("ethereum", "usd", freq)
    short = simulate(series, 50, END, seed=42)
    long = simulate(series, 400, END, seed=42)
    pd.testing.assert_frame_equal(long.tail(50).reset_index(drop=True), short)
    # a later hour of the same UTC day reveals one more point of the same path
    later = simulate(series, 400, END + timedelta(hours=1), seed=42)
    common = long.merge(later, on="ds")
    assert len(common) >= 399 and (common["price_x"] == common["price_y"]).all()


def test_a_4h_sample_reads_the_same_hourly_path():
    four = simulate(SeriesId("bitcoin", "usd", "4h"), 30, END, seed=42)
    hourly = simulate(BTC_1H, 200, END, seed=42).set_index("ds")
    assert four["ds"].iloc[-1] == pd.Timestamp("2024-06-01T12:00:00Z")
    assert four["price"].tolist() == hourly.loc[four["ds"], "price"].tolist()
    with pytest.raises(ValueError, match="periods must be at least 1"):
        simulate(BTC_1D, 0, END, seed=1)


def test_sample_ingest_is_labelled_simulated(monkeypatch: pytest.MonkeyPatch):
    result = ingest_series(BTC_1D, get_settings(), source="sample", days=90, now=END)
    meta = read_meta(result.path) or {}
    assert meta["source"] == "sample" and meta["simulated"] is True
    assert meta["last_fetch"]["seed"] == 42
    frame = read_raw(result.path)
    assert len(frame) == 90 and frame["ds"].iloc[-1] == pd.Timestamp("2024-06-01", tz="UTC")
    # a second run replaces the simulated path instead of splicing two paths together
    again = ingest_series(BTC_1D, get_settings(), source="sample", days=30, now=END)
    assert again.rows_total == 30


def test_sample_never_overwrites_real_data(tmp_path):
    from tests.helpers.paths import TEST_DATA

    real = ingest_series(
        BTC_1D, get_settings(), source=f"csv:{TEST_DATA / 'coingecko_export_btc_1d.csv'}"
    )
    before = real.path.read_bytes()
    with pytest.raises(UsageError, match="refusing to write SIMULATED"):
        ingest_series(BTC_1D, get_settings(), source="sample")
    assert real.path.read_bytes() == before


def test_4h_is_not_ingested():
    with pytest.raises(UsageError, match="4h is built from 1h"):
        ingest_series(SeriesId("bitcoin", "usd", "4h"), get_settings(), source="sample")


def test_cli_flags_default_from_settings(monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("SOURCE", "sample")
    monkeypatch.setenv("COINS", "bitcoin,ethereum")
    monkeypatch.setenv("FREQUENCIES", "1d,4h")  # 4h is made from the 1h raw file
    monkeypatch.setenv("HISTORY_DAYS", "20")
    get_settings.cache_clear()

    assert cli.main([]) == 0

    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == [
        "bitcoin-usd-1d",
        "bitcoin-usd-1h",
        "ethereum-usd-1d",
        "ethereum-usd-1h",
    ]
    data_dir = get_settings().data_dir
    assert len(read_raw(raw_path(data_dir, SeriesId("ethereum", "usd", "1h")))) == 20 * 24


def test_cli_flags_override_settings(tmp_path, capsys):
    target = tmp_path / "elsewhere"
    code = cli.main(
        [
            "--source",
            "sample",
            "--coin",
            "ethereum",
            "--vs",
            "eur",
            "--freq",
            "1d",
            "--since",
            "2020-01-01",
            "--data-dir",
            str(target),
        ]
    )
    assert code == 0
    frame = read_raw(raw_path(target, SeriesId("ethereum", "eur", "1d")))
    assert frame["ds"].iloc[0] == pd.Timestamp("2020-01-01", tz="UTC")


@pytest.mark.parametrize(
    "argv",
    [
        ["--freq", "4h"],
        ["--coin", "Not A Coin"],
        ["--source", "ftp"],
        ["--base-url", "api.coingecko.com"],
        ["--source", "sample", "--since", "2999-01-01"],
    ],
)
def test_bad_usage_exits_2(argv, capsys):
    assert cli.main(argv) == 2


@pytest.mark.parametrize(
    "argv", [["--days", "5", "--since", "2024-01-01"], ["--days", "0"], ["--since", "yesterday"]]
)
def test_bad_flags_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2


def test_an_invalid_setting_exits_2_naming_the_variable(monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("HTTP_MAX_ATTEMPTS", "0")
    get_settings.cache_clear()
    assert cli.main(["--source", "sample"]) == 2
    assert "HTTP_MAX_ATTEMPTS" in capsys.readouterr().err
