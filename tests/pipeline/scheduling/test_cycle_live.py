"""The nightly promotion with the forecast ledger's live figures: a real SQLite ledger beside the
models, filled through the ledger's record and score functions, and real cycles (fake trainer,
the real gate and promotion)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings, load_settings
from pipeline.ledger.db import open_ledger
from pipeline.scheduling.cycle import run_cycle
from pipeline.scheduling.history import CycleRecord, read_history
from tests.helpers.ledger import ABOVE_NAIVE_BAND, AT_MEDIAN, fill_ledger
from tests.helpers.scheduling import BTC, FakeTrainer, champion_bytes, fake_stages, good_metrics

#: Backtest metrics on which the gate promotes drift over the serving naive.
DRIFT_WINS = {"naive": good_metrics(1.0, winkler=100.0), "drift": good_metrics(0.95, winkler=90.0)}
#: Backtest metrics on which the gate keeps naive (drift's MASE is worse than naive's).
NAIVE_WINS = {"naive": good_metrics(1.0), "drift": good_metrics(1.5)}


def live_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "coins": ["bitcoin"], "frequencies": ["1d"], "stage_timeout_seconds": 5,
        "trust_window": "all", "trust_min_points": 10, "live_promotion_min_points": 40,
    }  # fmt: skip
    return load_settings(**(base | overrides))


def serving_naive_with_ledger(settings: Settings, after: np.ndarray) -> None:
    """A first cycle promotes naive; then the ledger gets one scored issue of naive and drift
    (drift's bands 10% wider than naive's, the same median)."""
    first = run_cycle(settings, stages=fake_stages(FakeTrainer({"naive": good_metrics()})))
    assert [(o.status, o.candidate) for o in first.series] == [("promoted", "naive")]
    ledger = open_ledger(settings)
    try:
        fill_ledger(ledger, settings, after, names=("naive", "drift"))
    finally:
        ledger.close()


def cycle(settings: Settings, metrics: dict[str, dict[str, float]]) -> CycleRecord:
    return run_cycle(settings, stages=fake_stages(FakeTrainer(metrics)))


def served_model(settings: Settings) -> str:
    pointer = ArtifactStore(Path(settings.models_dir)).champion(BTC)
    assert pointer is not None
    return pointer.model


def test_a_candidate_worse_on_live_wis_is_rejected_with_the_figures() -> None:
    settings = live_settings()
    serving_naive_with_ledger(settings, AT_MEDIAN)
    before = champion_bytes(settings)

    record = cycle(settings, DRIFT_WINS)

    outcome = record.series[0]
    assert (outcome.status, outcome.candidate) == ("rejected", "drift")
    assert outcome.reason.startswith(
        "rejected on live data: live WIS 1.100x the champion naive's over 40 matured points "
        "(one-sided Diebold-Mariano p="
    )
    assert "that drift is worse), above the 2% tolerance" in outcome.reason
    assert "backtest: passed the quality gate" in outcome.reason
    assert champion_bytes(settings) == before
    live = read_history(settings)[-1]["series"][0]["metrics"]["live"]
    assert live["n"] == 40 and live["wis_ratio"] == pytest.approx(1.1, rel=1e-3)
    assert live["points_needed"] == 40 and "alert" not in live


def test_with_too_few_live_points_the_backtest_gate_alone_decides() -> None:
    settings = live_settings(live_promotion_min_points=60)
    serving_naive_with_ledger(settings, AT_MEDIAN)

    record = cycle(settings, DRIFT_WINS)

    outcome = record.series[0]
    assert (outcome.status, outcome.candidate) == ("promoted", "drift")
    assert outcome.reason.startswith("passed the quality gate; ")
    assert (
        "live WIS rule skipped: 48 matured point(s) common to drift and the champion naive, "
        "60 needed" in outcome.reason
    )
    assert served_model(settings) == "drift"


def test_an_unreachable_ledger_never_fails_the_cycle() -> None:
    settings = live_settings()
    serving_naive_with_ledger(settings, AT_MEDIAN)
    down = live_settings(ledger_url="postgresql://nobody:pw1234@127.0.0.1:1/ledger")

    record = cycle(down, DRIFT_WINS)

    outcome = record.series[0]
    assert record.status == "success" and outcome.status == "promoted"
    assert "live rule skipped: the forecast ledger cannot be read (ledger " in outcome.reason
    assert "pw1234" not in outcome.reason and record.ledger_recorded is False


def test_a_miscalibrated_champion_raises_the_alert(recorder: Any) -> None:
    url, handler = recorder
    settings = live_settings(alert_webhook_url=SecretStr(url + "/hook"))
    serving_naive_with_ledger(settings, ABOVE_NAIVE_BAND)
    handler.received.clear()

    record = cycle(settings, NAIVE_WINS)

    outcome = record.series[0]
    assert (outcome.status, outcome.candidate) == ("promoted", "naive")  # its new version
    assert "no fallback (LIVE_CALIBRATION_FALLBACK is off)" in outcome.reason
    alert = outcome.metrics["live"]["alert"]
    assert alert.startswith(
        "champion naive fails the live calibration test: live 95% coverage 0.0% over 48 "
        "matured points in all"
    )
    assert served_model(settings) == "naive"
    assert len(handler.received) == 1
    problems = json.loads(handler.received[0][2])["problems"]
    assert problems == [
        {"series": BTC.name, "status": "promoted", "reason": outcome.reason, "alert": alert}
    ]


def test_with_the_fallback_on_the_best_calibrated_model_replaces_it() -> None:
    settings = live_settings(live_calibration_fallback=True)
    serving_naive_with_ledger(settings, ABOVE_NAIVE_BAND)

    record = cycle(settings, NAIVE_WINS)

    outcome = record.series[0]
    assert (outcome.status, outcome.candidate) == ("promoted", "drift")
    assert outcome.reason.startswith(
        "live calibration fallback: champion naive fails the live calibration test"
    )
    assert "drift is the best calibrated model (live 95% coverage 100.0% over 48 matured" in (
        outcome.reason
    )
    pointer = ArtifactStore(Path(settings.models_dir)).champion(BTC)
    assert pointer is not None and pointer.model == "drift"
    assert pointer.version == outcome.version
    assert outcome.metrics["mase"] == 1.5 and outcome.metrics["live"]["fallback"] == "drift"
