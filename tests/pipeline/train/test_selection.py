"""The selection backtest training runs first, and the constructor parameters it passes."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from pipeline.config import Settings
from pipeline.series import SeriesId
from pipeline.train.selection import model_params, selection_backtest
from tests.helpers.prices import random_walk_prices

SERIES = SeriesId("bitcoin", "usd", "1d")


def test_order_goes_to_arima_only() -> None:
    assert model_params("arima", (1, 1, 0)) == {"order": (1, 1, 0)}
    assert model_params("naive", (1, 1, 0)) == {}
    assert model_params("arima", None) == {}


def test_the_served_horizon_goes_to_the_models_that_calibrate_over_one() -> None:
    assert model_params("conformal_naive", None, 7) == {"horizon": 7}
    assert model_params("ensemble", None, 7) == {"horizon": 7}
    assert model_params("naive", None, 7) == {}
    assert model_params("arima", (1, 1, 0), 7) == {"order": (1, 1, 0)}


def test_every_origin_gets_a_full_window_of_recent_history(settings: Settings) -> None:
    y = random_walk_prices(200)
    selection = selection_backtest(SERIES, y, ["naive", "drift"], settings)
    summary, protocol = selection.summary, selection.protocol
    assert list(summary) == ["naive", "drift"]
    window = 100  # half the series: the BACKTEST_WINDOW of 1000 points does not fit
    assert protocol["train_window"] == window and protocol["window"] == "sliding"
    assert pd.Timestamp(protocol["start"]) >= y.index[window]
    assert protocol["horizon"] == 30 and protocol["origins"] >= 1
    assert summary["naive"]["n_folds"] == protocol["origins"]
    assert summary["naive"]["failed_folds"] == 0
    # the per-origin scores the significance tests need, one per origin and model
    evidence = selection.evidence
    assert evidence is not None and len(evidence.origins) == protocol["origins"]
    assert set(evidence.scores) == {"naive", "drift"}
    assert len(evidence.scores["drift"]["wis"]) == protocol["origins"]
    assert evidence.random_walk_median == {"naive"}  # drift's point forecast is not naive's
    assert evidence.overlap == 1  # 30-day horizon, origins 30 days apart


def test_a_series_too_short_to_backtest_gives_nothing_and_says_so(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    selection = selection_backtest(SERIES, random_walk_prices(30), ["naive"], settings)
    assert (selection.summary, selection.protocol, selection.evidence) == ({}, {}, None)
    [record] = [r for r in caplog.records if r.name == "pipeline.train.selection"]
    assert record.getMessage().startswith("bitcoin-usd-1d: no selection backtest (")
    assert record.getMessage().endswith("); the champion is chosen on the holdout")
