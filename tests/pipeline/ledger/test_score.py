"""Scoring recorded steps as prices arrive: late, repeated and corrected actuals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from pipeline.config import get_settings
from pipeline.evaluation.metrics import interval_scores, naive_scale
from pipeline.ledger.db import Ledger
from pipeline.ledger.record import sync
from pipeline.ledger.schema import aggregates, corrections, issues, scores
from pipeline.ledger.score import origin_scales, score
from tests.helpers.ledger import build_store
from tests.helpers.processed import write_processed


def _scores(ledger: Ledger) -> pd.DataFrame:
    with ledger.reader() as conn:
        rows = conn.execute(
            select(scores, issues.c.issue_id).join(issues, issues.c.id == scores.c.issue)
        ).all()
    frame = pd.DataFrame([r._asdict() for r in rows])
    frame["ds"] = pd.to_datetime(frame["ds"], utc=True)
    return frame


def test_observed_steps_are_scored_with_the_evaluation_scores(ledger: Ledger) -> None:
    settings = get_settings()
    built = build_store(settings.models_dir, settings.data_dir, observed=125, horizon=10)
    sync(ledger, built.store)
    result = score(ledger, settings)
    last = built.y.index[124]
    frame = _scores(ledger)
    assert result.scored[built.series.name] == len(frame) > 0
    assert frame["ds"].max() == last
    # one step of the drift model's newest issue, recomputed from the forecast and the price
    info = built.store.latest_issue(built.series, "drift", built.versions["drift"])
    assert info is not None
    row = frame[(frame["issue_id"] == info.issue_id) & (frame["step"] == 2)].iloc[0]
    fc = info.forecast.iloc[[1]]
    actual = built.y.loc[fc["ds"].iloc[0]]
    expected = interval_scores(np.array([actual]), fc)
    assert row["actual"] == pytest.approx(actual)
    assert row["wis"] == pytest.approx(expected["wis"][0])
    assert row["winkler_95"] == pytest.approx(expected["winkler_95"][0])
    assert row["inside_80"] == expected["coverage_80"][0]
    window = built.y.loc[: info.origin].iloc[-settings.ledger_scale_window :]
    assert row["scaled_error"] == pytest.approx(
        abs(fc["mean"].iloc[0] - actual) / naive_scale(window)
    )


def test_late_prices_are_scored_on_the_next_run_and_repeats_add_nothing(ledger: Ledger) -> None:
    settings = get_settings()
    built = build_store(settings.models_dir, settings.data_dir, observed=122)
    sync(ledger, built.store)
    first = score(ledger, settings).total
    write_processed(settings.data_dir, built.y.iloc[:130], built.series)
    second = score(ledger, settings).total
    third = score(ledger, settings).total
    assert first > 0 and second > 0 and third == 0
    frame = _scores(ledger)
    assert len(frame) == first + second
    assert not frame.duplicated(["issue", "step"]).any()


def test_a_corrected_price_is_recorded_and_its_steps_rescored(ledger: Ledger) -> None:
    settings = get_settings()
    built = build_store(settings.models_dir, settings.data_dir, observed=126)
    sync(ledger, built.store)
    score(ledger, settings)
    before = _scores(ledger)
    fixed_ds = built.y.index[123]
    y = built.y.iloc[:126].copy()
    y.loc[fixed_ds] *= 1.05
    write_processed(settings.data_dir, y, built.series)
    result = score(ledger, settings)
    after = _scores(ledger)
    hit = after["ds"] == fixed_ds
    assert result.corrected[built.series.name] == 1
    assert result.scored[built.series.name] == int(hit.sum()) > 0
    assert len(after) == len(before)
    assert after.loc[hit, "actual"].to_numpy() == pytest.approx(y.loc[fixed_ds])
    unchanged = before.set_index(["issue", "step"]).loc[
        after[~hit].set_index(["issue", "step"]).index, "wis"
    ]
    assert after[~hit].set_index(["issue", "step"])["wis"].equals(unchanged)
    with ledger.reader() as conn:
        fixes = conn.execute(select(corrections)).all()
    assert len(fixes) == 1
    assert fixes[0].old_price == pytest.approx(built.y.loc[fixed_ds])
    assert fixes[0].new_price == pytest.approx(y.loc[fixed_ds])


def test_aggregates_are_refreshed_with_paired_naive_ratios(ledger: Ledger) -> None:
    settings = get_settings()
    built = build_store(settings.models_dir, settings.data_dir, observed=135)
    sync(ledger, built.store)
    score(ledger, settings)
    frame = _scores(ledger)
    with ledger.reader() as conn:
        rows = {(r.model, r.window, r.step): r for r in conn.execute(select(aggregates))}
    naive = rows[("naive", "all", 0)]
    assert naive.n == int((frame["model"] == "naive").sum())
    assert naive.wis_ratio == pytest.approx(1.0) and naive.n_paired == naive.n
    drift = rows[("drift", "all", 0)]
    d, n = frame[frame["model"] == "drift"], frame[frame["model"] == "naive"]
    assert drift.wis == pytest.approx(d["wis"].mean())
    assert drift.wis_ratio == pytest.approx(d["wis"].mean() / n["wis"].mean())
    assert drift.coverage_95 == pytest.approx(d["inside_95"].mean())
    assert drift.coverage_95_low <= drift.coverage_95 <= drift.coverage_95_high
    assert drift.bias == pytest.approx(d["error"].mean())
    step3 = rows[("drift", "all", 3)]
    assert step3.n == int((d["step"] == 3).sum())
    assert rows[("drift", "7d", 0)].n < drift.n


def test_origin_scales_match_naive_scale() -> None:
    y = pd.Series(
        np.exp(np.random.default_rng(1).normal(size=50).cumsum() * 0.01) * 100,
        index=pd.date_range("2021-01-01", periods=50, freq="D", tz="UTC"),
    )
    origins = pd.Series(y.index[[0, 1, 5, 20, 49]])
    got = origin_scales(y, origins, window=10)
    want = [naive_scale(y.loc[:o].iloc[-10:]) for o in origins]
    np.testing.assert_allclose(got, want)


def test_wilson_interval_matches_scipy() -> None:
    from scipy.stats import binomtest

    from pipeline.ledger.aggregate import wilson_interval

    k, n = np.array([0, 7, 28, 30]), np.array([30, 30, 30, 30])
    low, high = wilson_interval(k, n)
    for i in range(len(k)):
        ci = binomtest(int(k[i]), int(n[i])).proportion_ci(0.95, method="wilson")
        assert (low[i], high[i]) == pytest.approx((ci.low, ci.high), abs=1e-9)
