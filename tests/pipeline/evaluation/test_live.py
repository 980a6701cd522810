"""The live rule of the nightly promotion, on a real SQLite ledger filled through the ledger's own
record and score functions."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from pipeline.config import Settings, load_settings
from pipeline.evaluation.champion import GateDecision
from pipeline.evaluation.live import LIVE_KEY, live_alert, live_promotion
from pipeline.ledger.db import Ledger, open_ledger
from pipeline.ledger.read import leaderboard, paired_comparison
from tests.helpers.ledger import ABOVE_NAIVE_BAND, AT_MEDIAN, DAILY, HORIZON, NAMES, fill_ledger


def live_settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "trust_window": "all", "trust_min_points": 10, "live_promotion_min_points": 40,
    }  # fmt: skip
    return load_settings(**(base | overrides))


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    opened = open_ledger(live_settings())  # the SQLite file in the test's models folder
    yield opened
    opened.close()


def passed(candidate: str) -> GateDecision:
    return GateDecision(candidate, True, "passed the quality gate", {candidate: {"mase": 1.0}})


def test_a_candidate_worse_on_live_wis_is_rejected_with_the_figures(ledger: Ledger) -> None:
    settings = live_settings()
    fill_ledger(ledger, settings, AT_MEDIAN)
    cmp = paired_comparison(ledger, DAILY.name, "m1", "naive", 40)
    assert cmp.n == 40 and cmp.ratio is not None and cmp.ratio > 1.05

    check = live_promotion(DAILY, settings, passed("m1"), "naive", NAMES, ledger=ledger)

    assert not check.decision.passed and check.decision.candidate == "m1"
    reason = check.decision.reason
    assert cmp.p_better is not None
    assert reason.startswith(
        f"rejected on live data: live WIS {cmp.ratio:.3f}x the champion naive's over 40 matured "
        f"points (one-sided Diebold-Mariano p={1 - cmp.p_better:.3f} that m1 is worse), above "
        "the 2% tolerance; champion naive: live 95% coverage 100.0% over 48 matured points"
    )
    assert reason.endswith("backtest: passed the quality gate")
    assert check.figures["n"] == 40 and check.figures["wis_ratio"] == pytest.approx(cmp.ratio)
    assert check.alert is None and check.decision.summary == {"m1": {"mase": 1.0}}


def test_the_tolerance_and_a_better_candidate_pass_with_the_figures(ledger: Ledger) -> None:
    settings = live_settings()
    fill_ledger(ledger, settings, AT_MEDIAN)
    better = live_promotion(DAILY, settings, passed("naive"), "m1", NAMES, ledger=ledger)
    assert better.decision.passed and better.decision.candidate == "naive"
    cmp = paired_comparison(ledger, DAILY.name, "naive", "m1", 40)
    assert cmp.ratio is not None and cmp.ratio < 1 and cmp.p_better is not None
    assert better.decision.reason.startswith(
        f"passed the quality gate; live WIS {cmp.ratio:.3f}x the champion m1's over 40 matured "
        f"points (p={cmp.p_better:.3f} that naive is better); champion m1: live 95% coverage"
    )
    loose = live_settings(live_promotion_tolerance=0.5)
    tolerated = live_promotion(DAILY, loose, passed("m1"), "naive", NAMES, ledger=ledger)
    assert tolerated.decision.passed and "live WIS 1.1" in tolerated.decision.reason


def test_too_few_common_points_leave_the_gate_to_decide(ledger: Ledger) -> None:
    settings = live_settings(live_promotion_min_points=60)
    fill_ledger(ledger, settings, AT_MEDIAN)
    check = live_promotion(DAILY, settings, passed("m1"), "naive", NAMES, ledger=ledger)
    assert check.decision.passed and check.decision.candidate == "m1"
    assert check.decision.reason.startswith(
        "passed the quality gate; live WIS rule skipped: 48 matured point(s) common to m1 and "
        "the champion naive, 60 needed"
    )
    unknown = live_promotion(DAILY, settings, passed("arima"), "naive", NAMES, ledger=ledger)
    assert unknown.decision.passed and "skipped: 0 matured point(s)" in unknown.decision.reason


def test_an_unreadable_ledger_skips_the_rule_and_never_raises() -> None:
    settings = live_settings(ledger_url="postgresql://nobody:secret@127.0.0.1:1/ledger")
    check = live_promotion(DAILY, settings, passed("m1"), "naive", NAMES)
    assert check.decision.passed and check.decision.candidate == "m1"
    assert "live rule skipped: the forecast ledger cannot be read (ledger " in (
        check.decision.reason
    )
    assert "secret" not in check.decision.reason and check.alert is None


def test_no_serving_champion_skips_the_rule(ledger: Ledger) -> None:
    check = live_promotion(DAILY, live_settings(), passed("m1"), None, NAMES, ledger=ledger)
    assert check.decision.passed and check.figures == {}
    assert check.decision.reason == "passed the quality gate; live rule skipped: no serving " + (
        "champion yet"
    )


def test_a_miscalibrated_champion_raises_an_alert_and_stays_without_the_fallback(
    ledger: Ledger,
) -> None:
    settings = live_settings()
    fill_ledger(ledger, settings, ABOVE_NAIVE_BAND)
    check = live_promotion(DAILY, settings, passed("naive"), "naive", NAMES, ledger=ledger)
    assert check.decision.passed and check.decision.candidate == "naive"
    assert check.alert == (
        "champion naive fails the live calibration test: live 95% coverage 0.0% over 48 matured "
        f"points in all (Wilson upper bound {check.figures['champion_coverage_95_high']:.1%}): "
        "significantly below nominal"
    )
    assert check.figures["champion_coverage_95"] == 0 and check.figures["champion_points"] == 48
    assert live_alert({LIVE_KEY: check.figures}) == check.alert
    assert check.decision.reason.endswith("no fallback (LIVE_CALIBRATION_FALLBACK is off)")
    assert "live WIS rule not needed: naive is the serving model" in check.decision.reason


def test_the_fallback_promotes_the_best_calibrated_model(ledger: Ledger) -> None:
    settings = live_settings(live_calibration_fallback=True)
    fill_ledger(ledger, settings, ABOVE_NAIVE_BAND)
    check = live_promotion(DAILY, settings, passed("naive"), "naive", NAMES, ledger=ledger)
    # m1 and m2 both hold every actual; m2's wider 80% band misses by less: the lower WIS
    assert check.decision.passed and check.decision.candidate == "m2"
    assert check.figures["fallback"] == "m2" and check.alert is not None
    reason = check.decision.reason
    assert reason.startswith("live calibration fallback: champion naive fails the live ")
    assert "m2 is the best calibrated model (live 95% coverage 100.0% over 48 matured points" in (
        reason
    )
    board = leaderboard(ledger, DAILY.name, window="all")
    ratios = {row.model: row.figures["wis_ratio"] for row in board.rows}
    assert ratios["m2"] < ratios["m1"] < 1.0  # type: ignore[operator]
    assert f"live WIS {ratios['m2']:.3f}x naive's); backtest: passed the quality gate" in reason
    # only what the cycle trained can be promoted
    trained = live_promotion(
        DAILY, settings, passed("naive"), "naive", ["naive", "m1"], ledger=ledger
    )
    assert trained.decision.candidate == "m1"
    # a rejected candidate gives way too
    rejected = GateDecision("naive", False, "quality gate failed: x", {})
    assert live_promotion(DAILY, settings, rejected, "naive", NAMES, ledger=ledger).decision.passed


def test_a_candidate_replacing_the_miscalibrated_champion_needs_no_fallback(
    ledger: Ledger,
) -> None:
    settings = live_settings(live_calibration_fallback=True, live_promotion_tolerance=0.5)
    fill_ledger(ledger, settings, ABOVE_NAIVE_BAND)
    check = live_promotion(DAILY, settings, passed("m1"), "naive", NAMES, ledger=ledger)
    assert check.decision.candidate == "m1" and check.decision.passed
    assert check.alert is not None and check.decision.reason.endswith("m1 replaces it")


def test_no_calibrated_model_means_no_fallback(ledger: Ledger) -> None:
    settings = live_settings(live_calibration_fallback=True)
    fill_ledger(ledger, settings, np.full(HORIZON, 150.0))  # outside every band
    check = live_promotion(DAILY, settings, passed("naive"), "naive", NAMES, ledger=ledger)
    assert check.decision.candidate == "naive" and check.alert is not None
    assert check.decision.reason.endswith(
        "no model passes the live calibration test to fall back to"
    )


def test_too_few_points_never_flag_the_champion(ledger: Ledger) -> None:
    settings = live_settings(live_calibration_fallback=True, trust_min_points=100)
    fill_ledger(ledger, settings, ABOVE_NAIVE_BAND)
    check = live_promotion(DAILY, settings, passed("naive"), "naive", NAMES, ledger=ledger)
    assert check.alert is None and check.decision.candidate == "naive"
    assert (
        "champion naive: live calibration not tested: 48 matured point(s) in all, 100 needed"
        in (check.decision.reason)
    )
