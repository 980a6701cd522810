"""The ledger's gauges in the scheduler's metrics, read from a real SQLite ledger."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Settings, load_settings
from pipeline.ledger.db import open_ledger
from pipeline.ledger.record import record
from pipeline.ledger.score import score
from pipeline.scheduling.metrics import metrics_text
from tests.helpers.ledger import DAILY, synthetic_entries
from tests.helpers.scheduling import metric_samples

ORIGIN = pd.Timestamp("2026-10-01", tz="UTC")


def _fill(settings: Settings, level: float) -> None:
    """Two models (naive the champion) issued once from ORIGIN with 48 daily steps around 100;
    the actuals after ORIGIN stay at ``level``."""
    rng = np.random.default_rng(7)
    before = pd.date_range(ORIGIN - pd.Timedelta(days=60), ORIGIN, freq="D")
    after = pd.date_range(ORIGIN + pd.Timedelta(days=1), periods=48, freq="D")
    y = pd.concat(
        [
            pd.Series(100 + np.cumsum(rng.normal(0, 1, len(before))), index=before),
            pd.Series(level, index=after),
        ]
    )
    ledger = open_ledger(settings)
    try:
        record(ledger, synthetic_entries(DAILY, 2, 48, ORIGIN))
        score(ledger, settings, [DAILY], prices={DAILY.name: y})
    finally:
        ledger.close()


def _labels(model: str) -> tuple[tuple[str, str], ...]:
    return (("model", model), ("series", DAILY.name))


@pytest.mark.parametrize(("level", "low"), [(100.0, 0.0), (150.0, 1.0)])
def test_live_gauges_per_series_and_model(level: float, low: float) -> None:
    settings = load_settings(coins=["bitcoin"], frequencies=["1d"], trust_min_points=10)
    _fill(settings, level)
    samples = metric_samples(metrics_text(settings))
    for model in ("naive", "m1"):
        labels = _labels(model)
        assert samples[("ledger_matured_points", labels)] >= 10
        assert samples[("ledger_coverage_95", labels)] == (1.0 if low == 0 else 0.0)
        assert samples[("ledger_coverage_95_low", labels)] == low
    assert samples[("ledger_champion", _labels("naive"))] == 1
    assert samples[("ledger_champion", _labels("m1"))] == 0
    assert samples[("ledger_wis_ratio", _labels("naive"))] == pytest.approx(1.0)


def test_too_few_points_never_flag_low_coverage() -> None:
    settings = load_settings(coins=["bitcoin"], frequencies=["1d"], trust_min_points=1000)
    _fill(settings, 150.0)
    samples = metric_samples(metrics_text(settings))
    assert samples[("ledger_coverage_95", _labels("naive"))] == 0.0
    assert samples[("ledger_coverage_95_low", _labels("naive"))] == 0


def test_an_unreadable_ledger_drops_the_gauges_not_the_metrics() -> None:
    settings = load_settings(ledger_url="postgresql://nobody@127.0.0.1:1/ledger")
    samples = metric_samples(metrics_text(settings))
    assert not any(name.startswith("ledger_coverage") for name, _ in samples)
    assert ("retrain_runs_total", (("outcome", "success"),)) in samples
