"""The champion and promotion decision: eligibility, selection, ties, training's fallback,
compare_models' gate, not-worse-than-serving and the bootstrap champion."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.config import get_settings
from pipeline.errors import UsageError
from pipeline.evaluation import champion as rule
from pipeline.evaluation.champion import (
    GateDecision,
    bootstrap,
    decide,
    decide_comparison,
    ensure_naive,
    select_champion,
    training_champion,
    worse_than_serving,
)
from pipeline.evaluation.evidence import Evidence
from pipeline.evaluation.gate import GateConfig
from pipeline.series import SeriesId
from tests.helpers.backtests import summary_row as row

SERIES = SeriesId("bitcoin", "usd", "1d")


def _winner(candidate: dict[str, float], mase_tolerance: float = 0.0) -> str:
    """The champion when ``candidate`` competes with a calibrated naive (default rule)."""
    metrics = {"naive": row(1.0, 0.95, 0, winkler=100.0), "cand": candidate}
    return select_champion(metrics, mase_tolerance=mase_tolerance)[0]


# -- the thresholds, by their effect ----------------------------------------------------------
@pytest.mark.parametrize(
    ("coverage", "wins"),
    [(0.899, False), (0.8999999, False), (0.90, True), (0.95, True), (0.99, True), (0.991, False)],
)
def test_default_coverage_band_admits_90_to_99_percent(coverage: float, wins: bool) -> None:
    assert _winner(row(1.0, coverage, 1, winkler=90.0)) == ("cand" if wins else "naive")


@pytest.mark.parametrize(
    ("mase", "wins"), [(1.0 + 1e-6, False), (1.0 + 1e-12, True), (1.0, True), (0.9, True)]
)
def test_default_mase_rule_rejects_anything_measurably_worse_than_naive(
    mase: float, wins: bool
) -> None:
    assert _winner(row(mase, 0.95, 1, winkler=90.0)) == ("cand" if wins else "naive")


def test_a_mase_tolerance_admits_models_up_to_that_fraction_worse() -> None:
    assert _winner(row(1.049, 0.95, 1, winkler=90.0), mase_tolerance=0.05) == "cand"
    assert _winner(row(1.051, 0.95, 1, winkler=90.0), mase_tolerance=0.05) == "naive"


def test_winkler_scores_within_the_tie_tolerance_go_to_the_simpler_model() -> None:
    # naive (complexity 0) ties within 1e-9 relative; a 1e-6 lower score is a real win
    assert _winner(row(1.0, 0.95, 1, winkler=100.0 - 1e-8)) == "naive"
    assert _winner(row(1.0, 0.95, 1, winkler=100.0 - 1e-4)) == "cand"


def test_holdout_band_lets_any_coverage_compete_on_one_holdout() -> None:
    holdout = {"naive": row(1.0, 1.0, 0, winkler=100.0), "drift": row(0.9, 0.0, 1, winkler=90.0)}
    assert select_champion(holdout)[0] == "naive"  # the backtest band would exclude both
    champion, reason = training_champion(["drift", "naive"], {}, holdout)
    assert champion == "drift"
    assert reason.startswith("holdout (too little data to backtest): drift wins (rule: mean MASE")
    assert "95% coverage inside 0%–100%" in reason


def test_the_gate_is_looser_than_selection_so_a_chosen_champion_passes_it() -> None:
    lo, hi = rule.SELECTION_COVERAGE_BAND
    g_lo, g_hi = rule.GATE_COVERAGE_BAND
    assert g_lo <= lo <= hi <= g_hi
    assert rule.GATE_CHAMPION_MASE_TOLERANCE >= rule.SELECTION_MASE_TOLERANCE
    for coverage in (lo, hi):
        metrics = {"naive": row(1.0, 0.95, 0), "cand": row(1.0, coverage, 1, winkler=90.0)}
        decision = decide_comparison("x", metrics, gate_config=GateConfig())
        assert decision.champion == "cand" and decision.gate is not None
        assert decision.gate.passed and decision.promotable


# -- selection ------------------------------------------------------------------------------
def test_lowest_winkler_wins_among_calibrated_models_not_worse_than_naive() -> None:
    metrics = {
        "naive": row(1.0, 0.95, 0, winkler=100.0),
        "garch": row(1.0, 0.94, 2, winkler=97.0),
        "ensemble": row(0.999, 0.96, 3, winkler=98.0),
        "drift": row(1.01, 0.95, 1, winkler=90.0),  # sharpest, but worse than naive in MASE
        "prophet": row(0.5, 0.40, 3, winkler=300.0),  # best MASE, useless intervals
    }
    name, reason = select_champion(metrics)
    assert name == "garch"
    assert reason.startswith(
        "garch wins (rule: mean MASE <= naive's and 95% coverage inside 90%–99%, "
        "then the lowest Winkler-95 score wins): MASE 1.000 (1.000x naive), "
        "95% coverage 94.0%, Winkler-95 97 (0.970x naive)"
    )
    assert "runner-up ensemble: MASE 0.999 (0.999x naive), 95% coverage 96.0%, " in reason
    assert "other eligible: naive" in reason
    assert "MASE worse than naive's 1.000: drift 1.010" in reason
    assert "95% coverage outside 90%–99%: prophet 40.0%" in reason
    # A 2% MASE tolerance lets drift compete, and its Winkler score is the lowest.
    name, reason = select_champion(metrics, mase_tolerance=0.02)
    assert name == "drift" and "mean MASE <= naive's + 2.0%" in reason


def test_lower_mase_with_miscalibrated_bands_loses_to_a_calibrated_model() -> None:
    metrics = {
        "naive": row(1.0, 0.88, 0, winkler=120.0),  # under-covers: not eligible itself
        "arima": row(0.90, 0.80, 2, winkler=95.0),  # lower MASE and Winkler, bands too narrow
        "conformal_naive": row(1.0, 0.95, 1, winkler=110.0),
    }
    name, reason = select_champion(metrics)
    assert name == "conformal_naive"
    assert "95% coverage outside 90%–99%: naive 88.0%, arima 80.0%" in reason
    assert "no other model is eligible" in reason
    # Widen the band and arima (lower MASE, lower Winkler) takes it.
    assert select_champion(metrics, coverage_band=(0.75, 0.99))[0] == "arima"


def test_ties_go_to_the_simpler_model_and_failures_are_excluded() -> None:
    metrics = {"naive": row(1.0, 0.95, 0), "garch": row(1.0, 0.95, 2, winkler=100 + 1e-10)}
    name, reason = select_champion(metrics)
    assert name == "naive" and "tied in Winkler-95 with garch: the simpler model wins" in reason
    metrics = {"naive": row(1.0, 0.95, 0), "arima": row(0.5, 0.95, 2, failed=1, winkler=1.0)}
    name, reason = select_champion(metrics)
    assert name == "naive" and "arima failed at 1 origin(s)" in reason
    metrics = {"naive": row(1.0, 0.95, 0), "odd": row(0.9, 0.95, 1, winkler=math.nan)}
    assert "odd has no Winkler-95 score" in select_champion(metrics)[1]
    metrics = {"naive": row(1.0, 0.95, 0), "blank": row(math.nan, 0.95, 1)}
    assert "blank has no MASE" in select_champion(metrics)[1]


def test_naive_wins_when_no_model_is_eligible() -> None:
    metrics = {
        "naive": row(1.0, 0.5, 0, winkler=200.0),
        "arima": row(0.8, 0.6, 2, winkler=150.0),
        "drift": row(1.2, 0.95, 1, winkler=90.0),
    }
    name, reason = select_champion(metrics)
    assert name == "naive"
    assert reason == (
        "no model is eligible (rule: mean MASE <= naive's and 95% coverage inside 90%–99%, "
        "then the lowest Winkler-95 score wins); MASE worse than naive's 1.000: drift 1.200; "
        "95% coverage outside 90%–99%: naive 50.0%, arima 60.0%; the naive baseline wins by "
        "default (MASE 1.000, 95% coverage 50.0%, Winkler-95 200)"
    )


def test_the_rule_needs_the_naive_baseline() -> None:
    with pytest.raises(UsageError, match="compares every model with the naive baseline"):
        select_champion({"arima": row(1.0, 0.95, 2)})
    with pytest.raises(UsageError, match="no model results"):
        select_champion({})
    assert ensure_naive(["drift"]) == ["naive", "drift"]
    assert ensure_naive(["drift", "naive"]) == ["drift", "naive"]


def test_complexity_comes_from_the_forecaster_when_the_metrics_lack_it() -> None:
    metrics = {"naive": row(1.0, 0.95), "drift": row(1.0, 0.95)}
    for m in metrics.values():
        del m["complexity"]
    assert select_champion(metrics)[0] == "naive"  # registry: naive is simpler than drift


# -- training -------------------------------------------------------------------------------
def test_training_judges_the_trained_models_on_the_selection_backtest() -> None:
    backtest = {
        "naive": row(1.0, 0.95, 0, winkler=100.0),
        "drift": row(1.0, 0.95, 1, winkler=90.0),
        "garch": row(1.0, 0.95, 2, winkler=50.0),  # backtested, but its fit failed: no version
    }
    holdout = {"naive": row(9.0, 0.0), "drift": row(0.1, 1.0)}
    champion, reason = training_champion(["naive", "drift"], backtest, holdout)
    assert champion == "drift"
    assert reason.startswith("selection backtest: drift wins (rule: mean MASE")
    assert "garch" not in reason


# -- compare_models -------------------------------------------------------------------------
def test_comparison_without_a_gate_is_promotable_and_a_failed_gate_is_not() -> None:
    metrics = {"naive": row(1.0, 0.95, 0), "drift": row(0.9, 0.95, 1, winkler=90.0)}
    plain = decide_comparison("x", metrics)
    assert (plain.champion, plain.gate, plain.promotable) == ("drift", None, True)
    strict = GateConfig(champion_mase_tolerance=-0.5)
    gated = decide_comparison("x", metrics, gate_config=strict)
    assert gated.champion == "drift" and gated.gate is not None
    assert [c.rule for c in gated.gate.failures()] == ["champion_vs_naive"]
    assert not gated.promotable


# -- the nightly promotion ------------------------------------------------------------------
def test_candidate_may_be_worse_than_serving_only_within_the_tolerance() -> None:
    summary = {"drift": row(1.0, 0.95), "arima": row(1.02, 0.95), "garch": row(1.0201, 0.95)}
    assert worse_than_serving(summary, "arima", "drift", 0.02) is None
    assert worse_than_serving(summary, "garch", "drift", 0.02) == (
        "candidate garch MASE 1.0201 is worse than the serving champion's model drift "
        "(1.0000) beyond the 2% tolerance"
    )
    assert worse_than_serving(summary, "garch", None, 0.02) is None  # nothing served
    assert worse_than_serving(summary, "garch", "prophet", 0.02) is None  # not evaluated


def test_decide_applies_the_gate_then_the_serving_rule() -> None:
    settings = get_settings()
    assert settings.promotion_tolerance == rule.DEFAULT_PROMOTION_TOLERANCE
    summary = {
        "naive": row(1.0, 0.95, 0, winkler=100.0),
        "drift": row(1.0, 0.95, 1, winkler=90.0),
    }
    passed = decide(SERIES, summary, settings, serving_model=None)
    assert (passed.candidate, passed.passed) == ("drift", True)
    assert passed.reason.startswith("passed the quality gate; drift wins")
    summary["naive"]["coverage_95"] = summary["drift"]["coverage_95"] = 0.5
    failed = decide(SERIES, summary, settings, serving_model=None)
    assert (failed.candidate, failed.passed) == ("naive", False)
    assert failed.reason == (
        "quality gate failed: champion naive 95% coverage 0.500, band [0.85, 0.99]"
    )


def test_bootstrap_serves_naive_only_when_nothing_is_served_yet() -> None:
    rejected = GateDecision("drift", False, "quality gate failed: x", {"naive": row(1.0, 0.5)})
    first = bootstrap(rejected, None, {"naive", "drift"})
    assert first is not None and (first.candidate, first.passed) == ("naive", True)
    assert first.reason == "bootstrap: no champion yet, serving naive; quality gate failed: x"
    assert first.summary == rejected.summary
    assert bootstrap(rejected, "drift", {"naive", "drift"}) is None  # a champion is served
    assert bootstrap(rejected, None, {"drift"}) is None  # naive was not trained
    assert bootstrap(GateDecision("drift", True, "ok"), None, {"naive"}) is None


# -- the evidence rule: significance and hysteresis -------------------------------------------
def _evidence(scores: dict[str, tuple[list[float], list[float]]], rw: set[str]) -> Evidence:
    """Per-origin (wis, mase) of each model over len(...) origins; ``rw``: naive-median models."""
    n = len(next(iter(scores.values()))[0])
    origins = tuple(pd.date_range("2021-01-01", periods=n, freq="30D", tz="UTC"))
    table = {m: {"wis": np.array(w), "mase": np.array(a)} for m, (w, a) in scores.items()}
    return Evidence(origins, table, 1, frozenset(rw))


def _wis_row(mase: float, wis: float, complexity: int) -> dict[str, float]:
    return {**row(mase, 0.95, complexity), "wis": wis}


NOISE = [0.3, -0.2, 0.1, -0.3, 0.2, -0.1, 0.25, -0.25]


def test_evidence_rule_keeps_the_incumbent_unless_the_challenger_is_better_with_confidence() -> (
    None
):
    metrics = {"naive": _wis_row(1.0, 10.0, 0), "garch": _wis_row(1.0, 9.9, 1)}
    naive = [10.0] * 8
    noisy = [10.0 - 0.1 + d for d in NOISE]  # 1% lower on average, but noisy
    clear = [9.0 + d / 100 for d in NOISE]  # 10% lower at every origin
    flat = [1.0] * 8
    weak = _evidence({"naive": (naive, flat), "garch": (noisy, flat)}, {"naive", "garch"})
    name, reason = select_champion(metrics, evidence=weak, incumbent="naive", rule="evidence")
    assert name == "naive"
    assert "the serving naive stays: garch scores lower but not with confidence (WIS DM p=" in (
        reason
    )
    assert select_champion(metrics, evidence=weak, rule="evidence")[0] == "garch"  # no incumbent
    strong = _evidence({"naive": (naive, flat), "garch": (clear, flat)}, {"naive", "garch"})
    name, reason = select_champion(metrics, evidence=strong, incumbent="naive", rule="evidence")
    assert name == "garch" and "garch beats the serving naive with confidence (WIS DM p=0.000)" in (
        reason
    )


def test_evidence_rule_lets_a_point_forecast_unlike_naive_win_only_on_a_significant_gain() -> None:
    metrics = {"naive": _wis_row(1.0, 10.0, 0), "drift": _wis_row(0.99, 9.0, 1)}
    wis = ([10.0] * 8, [9.0] * 8)
    lucky = [1.0 - 0.01 + d for d in NOISE]
    ev = _evidence({"naive": (wis[0], [1.0] * 8), "drift": (wis[1], lucky)}, {"naive"})
    name, reason = select_champion(metrics, evidence=ev, rule="evidence")
    assert name == "naive"
    assert "point forecast unlike the random walk's without a significant MASE gain over naive" in (
        reason
    )
    better = [0.9 + d / 100 for d in NOISE]
    ev = _evidence({"naive": (wis[0], [1.0] * 8), "drift": (wis[1], better)}, {"naive"})
    name, reason = select_champion(metrics, evidence=ev, rule="evidence")
    assert name == "drift" and "drift's point forecast beats naive's with confidence" in reason


def test_evidence_rule_scores_by_wis_and_says_when_nothing_was_tested() -> None:
    # drift has the lower Winkler-95, garch the lower WIS
    metrics = {
        "naive": _wis_row(1.0, 10.0, 0),
        "drift": {**_wis_row(1.0, 9.8, 1), "winkler_95": 80.0},
        "garch": {**_wis_row(1.0, 9.5, 2), "winkler_95": 90.0},
    }
    name, reason = select_champion(metrics, rule="evidence")
    assert name == "garch" and "then the lowest WIS wins" in reason
    assert "no per-origin scores: nothing was tested for significance" in reason
    assert select_champion(metrics, rule="means")[0] == "drift"
    with pytest.raises(UsageError, match="unknown selection rule 'best'"):
        select_champion(metrics, rule="best")


# -- the evidence rule's anchor: served unless a challenger is better with confidence ----------
ANCHOR = rule.ANCHOR_MODEL
RW = {"naive", "garch", "conformal_garch", ANCHOR}


def _anchored(
    garch_wis: list[float], *, anchor_cov: float = 0.95, challenger: str = "garch"
) -> tuple[dict[str, dict[str, float]], Evidence]:
    metrics = {
        "naive": _wis_row(1.0, 10.0, 0),
        challenger: _wis_row(1.0, float(np.mean(garch_wis)), 2),
        ANCHOR: {**_wis_row(1.0, 9.8, 2), "coverage_95": anchor_cov},
    }
    flat = [1.0] * 8
    ev = _evidence(
        {
            "naive": ([10.0] * 8, flat),
            challenger: (garch_wis, flat),
            ANCHOR: ([9.8] * 8, flat),
        },
        RW,
    )
    return metrics, ev


def test_the_anchor_is_served_unless_a_challenger_beats_it_with_confidence() -> None:
    assert ANCHOR == "band_average" and rule.SELECTION_RULE == "evidence"
    noisy = [9.6 + d for d in NOISE]  # 2% lower than the anchor on average, but noisy
    metrics, ev = _anchored(noisy)
    name, reason = select_champion(metrics, evidence=ev)
    assert name == ANCHOR
    assert f"{ANCHOR} unless beaten with confidence" in reason
    assert f"{ANCHOR} (the anchor) is served: garch scores lower but not with confidence" in reason
    # the same evidence with a serving garch: the anchor returns, garch had no evidence
    assert select_champion(metrics, evidence=ev, incumbent="garch")[0] == ANCHOR
    clear = [8.8 + d / 100 for d in NOISE]  # 10% lower than the anchor at every origin
    metrics, ev = _anchored(clear)
    name, reason = select_champion(metrics, evidence=ev, incumbent=ANCHOR)
    assert name == "garch"
    assert f"garch beats the anchor {ANCHOR} with confidence (WIS DM p=0.000)" in reason
    # without per-origin scores nothing is tested: the lowest mean WIS wins
    assert select_champion(metrics)[0] == "garch"
    # the means rule knows no anchor: equal Winkler-95 scores, the simplest model wins
    assert select_champion(metrics, evidence=ev, rule="means", incumbent=ANCHOR)[0] == "naive"


def test_a_serving_challenger_with_evidence_stays_unless_beaten_with_confidence() -> None:
    clear = [8.8 + d / 100 for d in NOISE]
    metrics, ev = _anchored(clear)
    better = [8.7 + d for d in NOISE]  # lower than garch on average, not with confidence
    metrics["conformal_garch"] = _wis_row(1.0, float(np.mean(better)), 3)
    scores = {m: {"wis": ev.scores[m]["wis"], "mase": ev.scores[m]["mase"]} for m in ev.scores}
    scores["conformal_garch"] = {"wis": np.array(better), "mase": np.ones(8)}
    ev = Evidence(ev.origins, scores, 1, frozenset(RW))
    name, reason = select_champion(metrics, evidence=ev, incumbent="garch")
    assert name == "garch"
    assert "the serving garch stays: it still beats the anchor with confidence" in reason


def test_the_anchor_needs_only_the_gates_coverage_band() -> None:
    noisy = [9.6 + d for d in NOISE]
    lo, hi = rule.GATE_COVERAGE_BAND
    # 87% over 8 origins: outside the selection band (noise, not evidence), inside the gate's
    metrics, ev = _anchored(noisy, anchor_cov=0.87)
    assert lo < 0.87 < rule.SELECTION_COVERAGE_BAND[0]
    assert select_champion(metrics, evidence=ev)[0] == ANCHOR
    # untested (no per-origin scores), the selection band applies to the anchor too
    name, reason = select_champion(metrics)
    assert name == "garch" and f"95% coverage outside 90%–99%: {ANCHOR} 87.0%" in reason
    # outside the gate's band the anchor is not eligible: the gate would reject it
    for cov in (lo - 0.01, 1.0):
        metrics, ev = _anchored(noisy, anchor_cov=cov)
        name, reason = select_champion(metrics, evidence=ev)
        assert name == "garch"
        assert f"{ANCHOR} {cov:.1%} (its band 85%–99%)" in reason


def test_intraday_series_are_anchored_on_the_calibrated_band_average() -> None:
    evaluated = ["naive", "band_average", "calibrated_band_average"]
    assert rule.anchor_for("1h", evaluated) == "calibrated_band_average"
    assert rule.anchor_for("4h", evaluated) == "calibrated_band_average"
    assert rule.anchor_for("1d", evaluated) == "band_average"
    # Not fitted: the intraday series falls back to the band average.
    assert rule.anchor_for("1h", ["naive", "band_average"]) == "band_average"
    assert rule.anchor_for(None, evaluated) == "band_average"
