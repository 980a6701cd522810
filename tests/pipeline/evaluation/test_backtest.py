"""Rolling-origin backtests with deterministic fake forecasters.

No look-ahead, sliding windows, refit-every-k, the per-model summary, metrics by horizon step,
failing models, and the usage errors of an unusable protocol.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from pipeline.errors import UsageError
from pipeline.evaluation.backtest import (
    horizon_metrics,
    horizon_ratio,
    paired_ratio,
    run_backtest,
)
from pipeline.evaluation.metrics import interval_scores
from tests.helpers.backtests import LastValue, Trend, Unfittable, rising, small_protocol
from tests.helpers.prices import random_walk_prices


def test_a_model_sees_only_data_strictly_before_its_origin() -> None:
    y = rising()
    LastValue.seen.clear()
    result = run_backtest(y, [LastValue], small_protocol(y), n_jobs=1)
    assert len(LastValue.seen) == len(result.origins) == 4
    for seen, origin in zip(LastValue.seen, result.origins, strict=True):
        assert seen.max() < origin
        assert seen.equals(y.index[y.index < origin])  # expanding: everything before it
    # On a rising series a model that saw the origin's price would forecast it exactly;
    # it forecasts the previous price instead, so every step-1 error is exactly one step's rise.
    first = result.folds[result.folds["step"] == 1]
    assert (first["actual"] - first["mean"]).tolist() == [1.0] * 4


def test_sliding_window_and_refit_every_k_never_leak() -> None:
    y = rising()
    LastValue.seen.clear()
    protocol = small_protocol(y, train_window=15, refit_every=3)
    result = run_backtest(y, [LastValue], protocol, n_jobs=1)
    assert len(LastValue.seen) == 2  # origins 1-3 share a fit, origin 4 refits
    assert all(len(s) == 15 for s in LastValue.seen)
    fm = result.fold_metrics
    assert fm["refit"].tolist() == [True, False, False, True]
    assert (fm["fit_seconds"][~fm["refit"]] == 0.0).all()  # only refits count fit time
    assert LastValue.seen[0].max() < result.origins[0]
    # Origins 2 and 3 are forecast by the fit made before origin 1 (it saw no newer data).
    o2 = result.folds[(result.folds["origin"] == result.origins[1]) & (result.folds["step"] == 1)]
    assert float(o2["mean"].iloc[0]) == float(y[y.index < result.origins[0]].iloc[-1])


def test_by_horizon_pools_origins_per_step() -> None:
    y = rising()
    result = run_backtest(y, [LastValue], small_protocol(y), n_jobs=1)
    table = result.by_horizon()
    assert table["step"].tolist() == [1, 2, 3, 4, 5]
    # Forecasting the last price on a +1/step series: error at step k is exactly k.
    assert table["mae"].tolist() == pytest.approx([1, 2, 3, 4, 5])
    assert table["mase"].tolist() == pytest.approx([1, 2, 3, 4, 5])  # naive scale is 1
    assert table["coverage_95"].tolist() == [1.0] * 5  # +-5% of ~150 holds a 5-step drift
    assert horizon_metrics(result.folds.iloc[:0]).empty


def test_summary_averages_folds_and_counts_them() -> None:
    y = rising()
    result = run_backtest(y, [LastValue, Trend], small_protocol(y), n_jobs=1)
    summary = result.summary()
    assert list(summary) == ["last", "trend"]
    assert summary["last"]["mae"] == pytest.approx(3.0)  # mean of 1..5
    assert summary["trend"]["mae"] == pytest.approx(0.0)  # the trend is exact on a line
    assert summary["last"]["n_folds"] == 4 and summary["last"]["failed_folds"] == 0
    assert (summary["last"]["complexity"], summary["trend"]["complexity"]) == (0, 2)


@pytest.mark.parametrize("naive_protocol", [True, False])
def test_a_naive_index_is_taken_as_utc(naive_protocol: bool) -> None:
    y = rising()
    naive = y.tz_localize(None)
    protocol = small_protocol(naive if naive_protocol else y)
    assert (protocol.start.tzinfo is None) is naive_protocol
    expected = run_backtest(y, [LastValue, Trend], small_protocol(y), n_jobs=1)
    result = run_backtest(naive, [LastValue, Trend], protocol, n_jobs=1)
    assert result.failures == {}
    assert [str(o.tz) for o in result.origins] == ["UTC"] * 4
    assert result.origins == expected.origins
    pd.testing.assert_frame_equal(result.folds, expected.folds)
    assert result.summary()["last"]["mae"] == pytest.approx(3.0)


def test_wis_ratio_is_taken_on_the_origins_both_models_forecast() -> None:
    o = list(pd.date_range("2021-01-01", periods=3, freq="10D", tz="UTC"))
    fm = pd.DataFrame(
        {
            "origin": o + o,
            "model": ["naive"] * 3 + ["m"] * 3,
            "error": [None, None, None, None, "ForecastError: no", None],
            "wis": [10.0, 20.0, 50.0, 5.0, math.nan, 15.0],
        }
    )
    assert paired_ratio(fm, "m", "wis") == pytest.approx((5 + 15) / (10 + 50))
    assert paired_ratio(fm, "naive", "wis") == 1.0
    assert math.isnan(paired_ratio(fm, "m", "wis", reference="absent"))


def test_summary_and_horizon_tables_carry_wis_and_its_ratio() -> None:
    y = random_walk_prices(200)
    result = run_backtest(y, [LastValue, Trend], small_protocol(y), n_jobs=1)
    summary = result.summary()
    fm = result.fold_metrics
    for model in ("last", "trend"):
        assert summary[model]["wis"] == pytest.approx(fm[fm["model"] == model]["wis"].mean())
        assert math.isnan(summary[model]["wis_ratio"])  # no naive among the models
    folds = result.folds
    per_point = interval_scores(folds["actual"].to_numpy(), folds)["wis"]
    by_step = folds.assign(wis=per_point).groupby(["model", "step"])["wis"].mean()
    table = result.by_horizon().set_index(["model", "step"])
    assert table["wis"].to_numpy() == pytest.approx(by_step.to_numpy())
    ratios = horizon_ratio(folds, "wis", reference="last")
    assert list(ratios.columns) == ["last", "trend"] and ratios.index.tolist() == [1, 2, 3, 4, 5]
    expected = by_step.loc["trend"] / by_step.loc["last"]
    assert ratios["trend"].to_numpy() == pytest.approx(expected.to_numpy())
    assert (ratios["last"] == 1.0).all()
    assert horizon_ratio(folds, "wis").empty  # naive was not evaluated


def test_a_failing_model_is_recorded_not_fatal() -> None:
    y = random_walk_prices(200)
    result = run_backtest(y, [LastValue, Unfittable], small_protocol(y), n_jobs=1)
    summary = result.summary()
    assert summary["broken"]["failed_folds"] == 4 and math.isnan(summary["broken"]["mase"])
    assert len(result.failures["broken"]) == 4
    assert result.failures["broken"][0].endswith("ForecastError: broken: refuses to fit")
    assert summary["last"]["n_folds"] == 4
    assert set(result.folds["model"]) == {"last"}


def test_unusable_protocols_and_model_lists_are_usage_errors() -> None:
    y = rising(20)
    with pytest.raises(UsageError, match="no usable origin between"):
        run_backtest(y, [LastValue], small_protocol(y, horizon=30), n_jobs=1)
    y = rising()
    with pytest.raises(UsageError, match="no models to evaluate"):
        run_backtest(y, [], small_protocol(y))
    with pytest.raises(UsageError, match="duplicate models in \\['last', 'last'\\]"):
        run_backtest(y, [LastValue, LastValue], small_protocol(y))
    with pytest.raises(UsageError, match="--train-window 2 is below the 3 points"):
        run_backtest(y, [LastValue], small_protocol(y, train_window=2))
    with pytest.raises(UsageError, match="unknown backend 'spark': use loky or dask"):
        run_backtest(y, [LastValue], small_protocol(y), backend="spark")
