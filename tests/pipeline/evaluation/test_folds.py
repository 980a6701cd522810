"""One unit of backtest work (run_group): a fit, its forecasts, and the errors it records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluation.folds import (
    UNKNOWN_COMPLEXITY,
    min_points,
    model_complexity,
    model_name,
    run_group,
)
from tests.helpers.backtests import LastValue, Trend, Unfittable, rising


def test_one_fit_forecasts_every_origin_of_its_group_further_ahead() -> None:
    y = rising(60)
    LastValue.seen.clear()
    results = run_group(LastValue, {}, y, [30, 33], horizon=4, train_window=None)
    assert len(LastValue.seen) == 1 and LastValue.seen[0].equals(y.index[:30])
    first, second = results
    assert (first.refit, second.refit) == (True, False)
    assert (first.origin, second.origin) == (y.index[30], y.index[33])
    assert first.error is None and first.rows is not None and second.rows is not None
    # both forecast the price before the first origin (129): the second 3 steps further ahead
    assert first.rows["mean"].tolist() == [129.0] * 4
    assert second.rows["actual"].tolist() == [133.0, 134.0, 135.0, 136.0]
    assert second.metrics["mae"] == pytest.approx(np.mean([4, 5, 6, 7]))
    # each fold is scaled by what a refit at its own origin would have seen
    assert second.rows["scale"].iloc[0] == pytest.approx(1.0)
    assert second.rows["last_price"].iloc[0] == 132.0


def test_a_sliding_window_trains_on_the_last_points_only() -> None:
    y = rising(60)
    LastValue.seen.clear()
    [result] = run_group(LastValue, {}, y, [40], horizon=3, train_window=10)
    assert LastValue.seen[0].equals(y.index[30:40])
    assert (result.n_train, result.train_start) == (10, y.index[30])


def test_a_fit_failure_is_recorded_at_every_origin_of_the_group() -> None:
    y = rising(60)
    results = run_group(Unfittable, {}, y, [30, 35], horizon=3, train_window=None)
    assert [r.error for r in results] == ["ForecastError: broken: refuses to fit"] * 2
    assert [r.rows for r in results] == [None, None]


def test_forecasts_off_the_series_grid_are_a_recorded_error() -> None:
    y = rising(60)
    gappy = y.drop(y.index[32])  # one missing day: the forecast's dates no longer match
    [result] = run_group(LastValue, {}, gappy, [30], horizon=5, train_window=None)
    assert result.error is not None
    assert "forecast timestamps do not match the series" in result.error
    assert "(is the series on a regular grid?)" in result.error


def test_names_complexity_and_minimum_points_of_names_and_classes() -> None:
    assert (model_name("naive"), model_name(Trend)) == ("naive", "trend")
    assert model_complexity(Trend) == 2 and model_complexity("naive") == 0
    assert model_complexity("no-such-model") == UNKNOWN_COMPLEXITY
    assert min_points(LastValue) == 3 and min_points("naive") >= 1


def test_series_index_is_not_modified() -> None:
    y = rising(40)
    before = y.copy()
    run_group(Trend, {}, y, [30], horizon=5, train_window=None)
    pd.testing.assert_series_equal(y, before)
