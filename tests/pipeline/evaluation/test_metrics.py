"""Metric definitions, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluation.metrics import (
    METRIC_KEYS,
    PINBALL_KEYS,
    forecast_metrics,
    naive_scale,
    winkler_score,
)


def test_naive_scale_is_in_sample_one_step_naive_mae() -> None:
    assert naive_scale(np.array([1.0, 2.0, 4.0, 7.0])) == pytest.approx(2.0)
    assert naive_scale(pd.Series([10.0, 8.0, 9.0])) == pytest.approx(1.5)


@pytest.mark.parametrize("values", [[5.0], [3.0, 3.0, 3.0], []])
def test_naive_scale_undefined_is_nan(values: list[float]) -> None:
    assert math.isnan(naive_scale(np.array(values)))


def test_winkler_score_penalises_misses_by_two_over_alpha() -> None:
    lo, hi = np.array([9.0, 9.0, 9.0]), np.array([11.0, 11.0, 11.0])
    y = np.array([10.0, 8.0, 12.5])
    # width 2; alpha = 0.2 -> penalty 10 x distance outside
    assert winkler_score(y, lo, hi, 80).tolist() == pytest.approx([2.0, 12.0, 17.0])


def test_forecast_metrics_match_hand_computed_values() -> None:
    train = pd.Series([100.0, 102.0, 101.0, 104.0])  # scale = (2 + 1 + 3) / 3 = 2; last 104
    actual = np.array([106.0, 103.0])
    forecast = pd.DataFrame(
        {
            "mean": [105.0, 105.0],
            "lower_80": [104.0, 104.0],
            "upper_80": [107.0, 106.0],
            "lower_95": [102.0, 102.0],
            "upper_95": [108.0, 108.0],
        }
    )
    m = forecast_metrics(actual, forecast, train)
    assert set(m) == set(METRIC_KEYS)
    assert m["mae"] == pytest.approx(1.5)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 4) / 2))
    assert m["mape"] == pytest.approx(100 * (1 / 106 + 2 / 103) / 2)
    assert m["smape"] == pytest.approx(100 * (2 / 211 + 4 / 208) / 2)
    assert m["mase"] == pytest.approx(1.5 / 2.0)
    # step 1: both up from 104 -> hit; step 2: forecast up, actual down -> miss
    assert m["directional_accuracy"] == pytest.approx(0.5)
    assert m["coverage_80"] == pytest.approx(0.5)  # 103 is below 104
    assert m["coverage_95"] == pytest.approx(1.0)
    assert m["width_80"] == pytest.approx(2.5)
    assert m["width_95"] == pytest.approx(6.0)
    assert m["winkler_80"] == pytest.approx((3.0 + (2.0 + 10.0 * 1.0)) / 2)
    assert m["winkler_95"] == pytest.approx(6.0)
    # pinball (1{y < q} - tau)(q - y) per quantile, mean of the two steps
    assert m["pinball_2.5"] == pytest.approx((0.025 * 4 + 0.025 * 1) / 2)  # q 102 below both
    assert m["pinball_10"] == pytest.approx((0.1 * 2 + 0.9 * 1) / 2)  # q 104: above 103
    assert m["pinball_50"] == pytest.approx((0.5 * 1 + 0.5 * 2) / 2)  # the median, 105
    assert m["pinball_90"] == pytest.approx((0.1 * 1 + 0.1 * 3) / 2)  # q 107, 106: above both
    assert m["pinball_97.5"] == pytest.approx((0.025 * 2 + 0.025 * 5) / 2)  # q 108
    # WIS: (|y - m| / 2 + 0.1 IS80 + 0.025 IS95) / 2.5 per step = twice the mean pinball
    assert m["wis"] == pytest.approx(((0.5 + 0.3 + 0.15) + (1.0 + 1.2 + 0.15)) / 2.5 / 2)
    assert m["wis"] == pytest.approx(2 * np.mean([m[k] for k in PINBALL_KEYS]))


def test_metric_keys_end_with_wis_and_the_pinball_loss_of_every_quantile() -> None:
    assert PINBALL_KEYS == ("pinball_2.5", "pinball_10", "pinball_50", "pinball_90", "pinball_97.5")
    assert METRIC_KEYS[-6:] == ("wis", *PINBALL_KEYS)


def test_forecast_metrics_refuse_misaligned_lengths() -> None:
    forecast = pd.DataFrame(
        {"mean": [1.0], "lower_80": [1.0], "upper_80": [1.0], "lower_95": [1.0], "upper_95": [1.0]}
    )
    with pytest.raises(ValueError, match="actual has 2 points but the forecast has 1"):
        forecast_metrics(np.array([1.0, 2.0]), forecast, pd.Series([1.0, 2.0]))


def test_a_flat_forecast_predicts_no_direction_despite_rounding() -> None:
    train = pd.Series([100.0, 101.0, 100.3])
    flat = float(np.exp(np.log(100.3)))  # may differ from 100.3 in the last bit
    forecast = pd.DataFrame(
        {
            "mean": [flat, flat],
            "lower_80": [90.0] * 2,
            "upper_80": [110.0] * 2,
            "lower_95": [80.0] * 2,
            "upper_95": [120.0] * 2,
        }
    )
    m = forecast_metrics(np.array([101.0, 100.3]), forecast, train)
    assert m["directional_accuracy"] == pytest.approx(0.5)  # only the unchanged step matches
