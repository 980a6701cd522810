"""The quality gate: its committed configuration, its rules and their messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import UsageError
from pipeline.evaluation import champion as rule
from pipeline.evaluation.backtest import run_backtest
from pipeline.evaluation.champion import select_champion
from pipeline.evaluation.gate import (
    GATE_BASELINE_WIS_TOLERANCE,
    GATE_CHAMPION_WIS_TOLERANCE,
    GateConfig,
    evaluate_gate,
    load_gate_config,
)
from tests.helpers.backtests import LastValue, Unfittable, small_protocol
from tests.helpers.backtests import summary_row as row
from tests.helpers.paths import ROOT
from tests.helpers.prices import random_walk_prices


def test_committed_gate_config_is_the_built_in_defaults() -> None:
    config = load_gate_config(ROOT / "quality_gate.json")
    assert config == GateConfig()
    assert config.coverage_band == rule.GATE_COVERAGE_BAND == (0.85, 0.99)
    assert config.champion_mase_tolerance == rule.GATE_CHAMPION_MASE_TOLERANCE == 0.05
    assert config.champion_wis_tolerance == GATE_CHAMPION_WIS_TOLERANCE == 0.02
    assert config.baseline_wis_tolerance == GATE_BASELINE_WIS_TOLERANCE == 0.01
    raw = json.loads((ROOT / "quality_gate.json").read_text())
    assert all(entry["description"] for entry in raw["thresholds"].values())


def test_gate_config_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="gate config .*nope.json not found"):
        load_gate_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"thresholds": {}}))
    with pytest.raises(UsageError, match="bad.json is invalid: KeyError"):
        load_gate_config(bad)
    raw = json.loads((ROOT / "quality_gate.json").read_text())
    raw["thresholds"]["coverage_95_min"]["value"] = 1.5
    bad.write_text(json.dumps(raw))
    with pytest.raises(UsageError, match=r"coverage band \[1.5, 0.99\] must lie within \[0, 1\]"):
        load_gate_config(bad)


def test_a_gate_config_without_the_wis_thresholds_gets_their_defaults(tmp_path: Path) -> None:
    raw = json.loads((ROOT / "quality_gate.json").read_text())
    del raw["thresholds"]["champion_wis_tolerance"], raw["thresholds"]["baseline_wis_tolerance"]
    raw["thresholds"]["baseline_mase_tolerance"]["value"] = 0.03
    older = tmp_path / "older.json"
    older.write_text(json.dumps(raw))
    assert load_gate_config(older) == GateConfig(baseline_mase_tolerance=0.03)


@pytest.mark.parametrize(("coverage", "passes"), [(0.849, False), (0.85, True), (0.991, False)])
def test_default_gate_band_is_85_to_99_percent(coverage: float, passes: bool) -> None:
    summary = {"naive": row(1.0, coverage)}
    outcome = evaluate_gate("x", summary, "naive", GateConfig())
    assert outcome.passed is passes


@pytest.mark.parametrize(("mase", "passes"), [(1.05, True), (1.0501, False)])
def test_default_gate_lets_the_champion_be_5_percent_worse_than_naive(
    mase: float, passes: bool
) -> None:
    summary = {"naive": row(1.0, 0.95), "drift": row(mase, 0.95, 1)}
    outcome = evaluate_gate("x", summary, "drift", GateConfig())
    assert outcome.passed is passes


def _scored(mase: float, cov: float, wis: float, complexity: int = 0) -> dict[str, float]:
    return {**row(mase, cov, complexity), "wis": wis}


@pytest.mark.parametrize(("wis", "passes"), [(102.0, True), (102.01, False)])
def test_default_gate_lets_the_champion_be_2_percent_worse_than_naive_in_wis(
    wis: float, passes: bool
) -> None:
    summary = {"naive": _scored(1.0, 0.95, 100.0), "garch": _scored(1.0, 0.95, wis, 2)}
    outcome = evaluate_gate("x", summary, "garch", GateConfig())
    assert outcome.passed is passes
    check = next(c for c in outcome.checks if c.rule == "champion_wis_vs_naive")
    assert check.passed is passes
    assert check.message == (
        f"champion garch mean WIS {wis:,.2f}, limit 102.00 (naive 100.00 x (1 + 0.02))"
    )


def test_without_wis_the_champion_wis_rule_is_skipped_with_a_note() -> None:
    summary = {"naive": row(1.0, 0.95), "garch": row(1.0, 0.95, 2)}
    outcome = evaluate_gate("x", summary, "garch", GateConfig())
    assert outcome.passed
    assert "champion_wis_vs_naive" not in [c.rule for c in outcome.checks]
    assert outcome.notes == ["the metrics have no WIS: champion_wis_vs_naive not checked"]


def test_gate_fails_and_names_rule_value_and_threshold() -> None:
    summary = {"naive": row(1.0, 0.90), "arima": row(0.95, 0.97, 2)}
    ok = evaluate_gate("x", summary, "arima", GateConfig(0.05, (0.85, 0.99), 0.02))
    assert ok.passed
    impossible = GateConfig(0.05, (0.98, 1.0), 0.02)
    outcome = evaluate_gate("x", summary, "arima", impossible)
    assert not outcome.passed
    [failure] = outcome.failures()
    assert failure.rule == "champion_coverage_95"
    assert "95% coverage 0.970, band [0.98, 1.00]" in failure.message
    assert "quality gate for x: FAILED" in outcome.render()
    assert "  [FAIL] champion_coverage_95: champion arima 95% coverage" in outcome.render()
    baseline = {"models": {"naive": {"mase": 1.0}, "arima": {"mase": 0.80}}}
    outcome = evaluate_gate("x", summary, "arima", GateConfig(), baseline_entry=baseline)
    [failure] = outcome.failures()
    assert failure.rule == "baseline_arima"
    assert failure.message == "arima mean MASE 0.9500, limit 0.8080 (baseline 0.8000 x (1 + 0.01))"


def test_the_gate_needs_naive() -> None:
    with pytest.raises(UsageError, match="the gate needs the naive baseline"):
        evaluate_gate("x", {"arima": row(1.0, 0.95)}, "arima", GateConfig())


def test_broken_forecaster_fails_the_gate() -> None:
    y = random_walk_prices(200)
    result = run_backtest(y, [LastValue, Unfittable], small_protocol(y), n_jobs=1)
    summary = result.summary()
    summary["naive"] = summary.pop("last")
    champion, _ = select_champion(summary)
    outcome = evaluate_gate("x", summary, champion, GateConfig(0.05, (0.0, 1.0), 0.02))
    assert [c.rule for c in outcome.failures()] == ["all_folds_fit"]
    assert "broken 4 (threshold 0)" in outcome.failures()[0].message


def test_gate_catches_wider_intervals_that_mase_cannot_see() -> None:
    """Same point forecast (same MASE) but worse bands: only the Winkler baseline rule fails."""
    summary = {"naive": row(1.0, 0.95), "garch": row(1.0, 0.95, 2)}
    summary["naive"]["winkler_95"] = 100.0
    summary["garch"]["winkler_95"] = 103.0
    baseline = {
        "models": {
            "naive": {"mase": 1.0, "winkler_95": 100.0},
            "garch": {"mase": 1.0, "winkler_95": 100.0},
        }
    }
    outcome = evaluate_gate("x", summary, "naive", GateConfig(), baseline_entry=baseline)
    [failure] = outcome.failures()
    assert failure.rule == "baseline_winkler_garch"
    assert failure.message == (
        "garch mean Winkler-95 103.00, limit 102.00 (baseline 100.00 x (1 + 0.02))"
    )


def test_gate_catches_a_worse_wis_that_mase_cannot_see() -> None:
    """Same point forecast (same MASE) but worse bands: the WIS baseline rule fails; an entry
    recorded before WIS existed is skipped with a note, never a silent pass."""
    summary = {"naive": _scored(1.0, 0.95, 100.0), "garch": _scored(1.0, 0.95, 101.5, 2)}
    baseline = {
        "models": {
            "naive": {"mase": 1.0, "winkler_95": 100.0, "wis": 100.0},
            "garch": {"mase": 1.0, "winkler_95": 100.0, "wis": 100.0},
        }
    }
    outcome = evaluate_gate("x", summary, "naive", GateConfig(), baseline_entry=baseline)
    [failure] = outcome.failures()
    assert failure.rule == "baseline_wis_garch"
    assert failure.message == "garch mean WIS 101.50, limit 101.00 (baseline 100.00 x (1 + 0.01))"
    rules = [c.rule for c in outcome.checks]
    assert rules.index("baseline_wis_garch") < rules.index("baseline_winkler_garch")
    del baseline["models"]["garch"]["wis"]
    outcome = evaluate_gate("x", summary, "naive", GateConfig(), baseline_entry=baseline)
    assert outcome.passed
    assert "garch's baseline has no WIS: baseline_wis_garch not checked" in outcome.notes
