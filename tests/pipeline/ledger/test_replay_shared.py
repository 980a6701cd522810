"""The replayed year on the real BTC history: the ledger's naive row is the backtest's naive.

A year of nights is replayed through the CLI on the processed Bitstamp exports (daily and
hourly, the real ingest -> process stages), every model refitted each night on the last
``BACKTEST_WINDOW`` prices; a rolling-origin backtest of naive with daily origins, the same
window and the served horizon scores the same points, and must report the same WIS, coverage,
Winkler, width and MASE as the ledger's leaderboard.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.__main__ import main
from pipeline.config import get_settings
from pipeline.evaluation.backtest import run_backtest
from pipeline.evaluation.protocol import BacktestProtocol
from pipeline.ingest import ingest_series
from pipeline.ledger.db import open_ledger
from pipeline.ledger.read import leaderboard
from pipeline.process.stage import load_training_series, process_series
from pipeline.series import SeriesId, freq_offset

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

FILES = {"1d": "bitstamp_btcusd_1d_2014-2021.csv", "1h": "bitstamp_btcusd_1h_2018-2021.csv"}
#: The last night whose whole served horizon (30 days, 48 hours) is observed by 2021-12-31.
UNTIL = {"1d": "2021-12-01", "1h": "2021-12-29"}
SINCE = "2021-01-01"


@pytest.mark.usefixtures("restore_root_logger")
@pytest.mark.parametrize("freq", ["1d", "1h"])
def test_replayed_year_agrees_with_the_backtest(
    freq: str, shared_data: Path, ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_URL", ledger_url)
    monkeypatch.setenv("FREQUENCIES", freq)
    get_settings.cache_clear()
    settings = get_settings()
    series = SeriesId("bitcoin", "usd", freq)
    ingest_series(series, settings, source=f"csv:{shared_data / FILES[freq]}")
    process_series(series, settings)
    args = [
        "ledger", "replay", "--coin", "bitcoin", "--freq", freq, "--since", SINCE,
        "--until", UNTIL[freq], "--refit-every", "1", "--models", "naive,drift",
    ]  # fmt: skip
    assert main(args) == 0

    ledger = open_ledger(url=ledger_url)
    board = leaderboard(ledger, series.name, window="all")
    ledger.close()
    assert board.champion == "naive" and {r.model for r in board.rows} == {"naive", "drift"}
    live = next(r for r in board.rows if r.model == "naive").figures

    y = load_training_series(settings.data_dir, series)
    step = freq_offset(freq)
    horizon = settings.horizon(freq)
    first_origin = y.index[y.index <= pd.Timestamp(SINCE, tz="UTC")][-1]
    last_origin = y.index[y.index <= pd.Timestamp(UNTIL[freq], tz="UTC")][-1]
    protocol = BacktestProtocol(
        freq, horizon, pd.Timedelta(days=1), first_origin + step, last_origin + step,
        train_window=settings.backtest_window,
    )  # fmt: skip
    backtest = run_backtest(y, ["naive"], protocol, series=series.name, progress=False)
    offline = backtest.summary()["naive"]
    nights = (pd.Timestamp(UNTIL[freq]) - pd.Timestamp(SINCE)).days + 1
    assert len(backtest.origins) == nights
    assert live["n"] == nights * horizon == live["n_paired"]
    for key in ("wis", "coverage_80", "coverage_95", "winkler_95", "width_95", "mase"):
        assert live[key] == pytest.approx(offline[key], rel=1e-9), key
