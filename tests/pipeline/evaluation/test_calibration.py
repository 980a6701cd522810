"""Calibration tests of a backtest: which points are tested, and the p-values they give."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.evaluation.backtest import run_backtest
from pipeline.evaluation.calibration import (
    calibration_table,
    calibration_tests,
    describe_samples,
    json_safe,
    non_overlapping,
)
from pipeline.evaluation.scoring import christoffersen_independence, kupiec_pof
from tests.helpers.backtests import LastValue, small_protocol
from tests.helpers.prices import random_walk_prices

DAY = pd.Timedelta("1D")


def _origins(n: int, every: str) -> list[pd.Timestamp]:
    return list(pd.date_range("2021-01-01", periods=n, freq=every, tz="UTC"))


def _folds(
    origins: list[pd.Timestamp], horizon: int, inside: dict[int, list[bool]]
) -> pd.DataFrame:
    """Rows of one model "m" with bands [99, 101] (80) and [98, 102] (95) around 100; the actual
    is 100 where ``inside[step][i]`` holds at origin ``i``, else 103 (outside both)."""
    rows = []
    for i, origin in enumerate(origins):
        for step in range(1, horizon + 1):
            hit = inside.get(step, [True] * len(origins))[i]
            rows.append(
                {
                    "origin": origin,
                    "model": "m",
                    "step": step,
                    "actual": 100.0 if hit else 103.0,
                    "mean": 100.0,
                    "lower_80": 99.0,
                    "upper_80": 101.0,
                    "lower_95": 98.0,
                    "upper_95": 102.0,
                }
            )
    return pd.DataFrame(rows)


def test_non_overlapping_keeps_origins_at_least_a_horizon_apart() -> None:
    origins = _origins(10, "10D")
    assert non_overlapping(origins, 30 * DAY) == origins[::3]
    assert non_overlapping(origins, 10 * DAY) == origins
    assert non_overlapping(list(reversed(origins)), 25 * DAY) == origins[::3]


def test_p_values_are_kupiec_and_christoffersen_of_the_tested_hits() -> None:
    origins = _origins(12, "10D")
    step1 = [True, False, False, True, True, True, True, True, True, True, False, True]
    last = [False, True, True, False, True, True, True, True, True, True, True, True]
    cal = calibration_tests(_folds(origins, 30, {1: step1, 30: last}), origins, 30, DAY)
    one, far = cal["models"]["m"]["step_1"], cal["models"]["m"]["non_overlapping"]
    assert one["n"] == 12 and one["coverage_95"] == pytest.approx(9 / 12)
    assert one["kupiec_95"] == pytest.approx(kupiec_pof(np.array(step1), 95))
    assert one["kupiec_80"] == pytest.approx(kupiec_pof(np.array(step1), 80))
    assert one["christoffersen_95"] == pytest.approx(christoffersen_independence(np.array(step1)))
    kept = last[::3]  # origins 0, 3, 6, 9: the last step of each
    assert far["n"] == 4 and far["coverage_80"] == pytest.approx(np.mean(kept))
    assert far["kupiec_80"] == pytest.approx(kupiec_pof(np.array(kept), 80))
    assert math.isnan(far["christoffersen_80"]) is math.isnan(
        christoffersen_independence(np.array(kept))
    )
    assert cal["samples"]["non_overlapping"] == {
        "step": 30,
        "origins": 4,
        "of_origins": 12,
        "overlapping_origins": True,
    }


def test_the_report_says_when_origins_overlap_and_shows_p_values() -> None:
    origins = _origins(12, "10D")
    cal = calibration_tests(_folds(origins, 30, {}), origins, 30, DAY)
    text = describe_samples(cal)
    assert "Step 30: the last horizon step of 4 of the 12 origins" in text
    assert "forecast windows overlap" in text
    table = calibration_table(cal).splitlines()
    assert table[0].startswith("| Model | Step | n | Cov. 80 | Kupiec 80 p | Christoffersen 80 p |")
    # always inside: coverage 100%; Kupiec LR = -2 n log(nominal coverage) rejects 80% at 5%;
    # with no miss there is nothing to test for independence
    assert stats.chi2.sf(-2 * 12 * math.log(0.8), 1) == pytest.approx(0.0207, abs=1e-4)
    assert stats.chi2.sf(-2 * 12 * math.log(0.95), 1) == pytest.approx(0.267, abs=1e-3)
    assert table[2] == "| m | 1 | 12 | 100.0% | 0.021 | – | 100.0% | 0.267 | – |"
    missed = calibration_tests(_folds(origins, 30, {1: [False] * 12}), origins, 30, DAY)
    assert calibration_table(missed).splitlines()[2] == (
        "| m | 1 | 12 | 0.0% | <0.001 | – | 0.0% | <0.001 | – |"
    )
    spaced = _origins(4, "30D")
    assert "all 4 origins (spaced at least a horizon apart: no overlap)" in describe_samples(
        calibration_tests(_folds(spaced, 30, {}), spaced, 30, DAY)
    )


def test_json_safe_turns_nan_into_null() -> None:
    origins = _origins(3, "30D")
    cal = json_safe(calibration_tests(_folds(origins, 2, {}), origins, 2, DAY))
    assert cal["models"]["m"]["step_1"]["christoffersen_95"] is None
    assert cal["models"]["m"]["step_1"]["n"] == 3.0


def test_a_backtest_result_tests_every_model() -> None:
    y = random_walk_prices(200)
    result = run_backtest(y, [LastValue], small_protocol(y, n_origins=6), n_jobs=1)
    cal = result.calibration()
    assert set(cal["models"]) == {"last"}
    step1 = result.folds[result.folds["step"] == 1]
    hits = (step1["actual"] >= step1["lower_95"]) & (step1["actual"] <= step1["upper_95"])
    assert cal["models"]["last"]["step_1"]["kupiec_95"] == pytest.approx(
        kupiec_pof(hits.to_numpy(), 95)
    )
    assert cal["samples"]["non_overlapping"]["overlapping_origins"] is False  # 10D apart, h = 5
