"""The champion and promotion decision: which model is served, and when the served one changes.

One module owns the whole decision so that training, ``compare_models.py`` and the nightly
scheduler apply the same rule:

1. :func:`select_champion` -- among the models evaluated on the same backtest, the *eligible*
   ones (no failed origin, mean MASE not worse than naive's by more than
   ``DEFAULT_MASE_TOLERANCE``, 95% coverage inside ``DEFAULT_COVERAGE_BAND``) compete on the
   Winkler-95 score; ties go to the simpler model; with none eligible, naive is served.
2. :func:`decide` -- the nightly promotion: the candidate must pass the quality gate
   (``quality_gate.json``) and must not be worse than the serving champion's model by more than
   the ``PROMOTION_TOLERANCE`` setting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.evaluation.backtest import model_complexity
from pipeline.series import SeriesId

# -- champion selection ---------------------------------------------------------------------
#: The default band around nominal for the champion's 95% coverage (the gate keeps its own band
#: in ``quality_gate.json``).
DEFAULT_COVERAGE_BAND: tuple[float, float] = (0.90, 0.99)
#: How much worse than naive's mean MASE a champion may be (0.0: not worse at all).
DEFAULT_MASE_TOLERANCE = 0.0
_TIE = 1e-9


def _score(row: Mapping[str, float], key: str) -> float:
    value = float(row.get(key, float("nan")))
    return value if math.isfinite(value) else math.inf


def _mase(row: Mapping[str, float]) -> float:
    return _score(row, "mase")


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.3f}x naive" if 0 < reference < math.inf else "naive has none"


def _describe(metrics: Mapping[str, Mapping[str, float]], name: str) -> str:
    """``MASE 1.000 (1.000x naive), 95% coverage 95.0%, Winkler-95 37,000 (0.959x naive)``."""
    row, naive = metrics[name], metrics["naive"]
    mase, wink = _mase(row), _score(row, "winkler_95")
    cov = float(row.get("coverage_95", math.nan))
    if name == "naive":
        return f"MASE {mase:.3f}, 95% coverage {cov:.1%}, Winkler-95 {_num(wink)}"
    return (
        f"MASE {mase:.3f} ({_ratio(mase, _mase(naive))}), 95% coverage {cov:.1%}, "
        f"Winkler-95 {_num(wink)} ({_ratio(wink, _score(naive, 'winkler_95'))})"
    )


def _eligibility(
    metrics: Mapping[str, Mapping[str, float]],
    coverage_band: tuple[float, float],
    mase_tolerance: float,
) -> tuple[list[str], list[str]]:
    """(eligible models, why the others are not) under the champion rule."""
    lo, hi = coverage_band
    naive_mase = _mase(metrics["naive"])
    limit = naive_mase * (1 + mase_tolerance)
    failed: list[str] = []
    worse: list[str] = []
    uncalibrated: list[str] = []
    eligible: list[str] = []
    for name, row in metrics.items():
        cov = float(row.get("coverage_95", float("nan")))
        mase = _mase(row)
        if row.get("failed_folds", 0):
            failed.append(f"{name} failed at {int(row['failed_folds'])} origin(s)")
        elif mase == math.inf:
            failed.append(f"{name} has no MASE")
        elif _score(row, "winkler_95") == math.inf:
            failed.append(f"{name} has no Winkler-95 score")
        elif mase > limit + _TIE * max(1.0, abs(limit)):
            worse.append(f"{name} {mase:.3f}")
        elif not (math.isfinite(cov) and lo <= cov <= hi):
            uncalibrated.append(f"{name} {cov:.1%}")
        else:
            eligible.append(name)
    excluded = failed
    if worse:
        tol = f" + {mase_tolerance:.1%}" if mase_tolerance else ""
        excluded.append(f"MASE worse than naive's {naive_mase:.3f}{tol}: {', '.join(worse)}")
    if uncalibrated:
        excluded.append(f"95% coverage outside {lo:.0%}–{hi:.0%}: {', '.join(uncalibrated)}")
    return eligible, excluded


def select_champion(
    metrics: dict[str, dict[str, float]],
    *,
    coverage_band: tuple[float, float] = DEFAULT_COVERAGE_BAND,
    mase_tolerance: float = DEFAULT_MASE_TOLERANCE,
) -> tuple[str, str]:
    """(model, reason) by the champion rule: calibrated, not worse than naive, sharpest.

    A model is *eligible* when its mean MASE is not worse than the naive baseline's by more
    than ``mase_tolerance`` (a fraction; 0 = not worse at all) and its empirical 95% coverage
    lies inside ``coverage_band``. Among the eligible models the lowest mean Winkler (interval)
    score at 95% wins; scores within 1e-9 (relative) go to the simpler model (``complexity`` in
    the metrics, else the forecaster class's). Naive always competes. Models that failed at some
    origin, or have no MASE or Winkler score, cannot win. When no model is eligible, naive wins
    and the reason says why. The reason names the rule, the winner's MASE, coverage and Winkler
    against naive's, and the runner-up.
    """
    if not metrics:
        raise UsageError("no model results to choose a champion from")
    if "naive" not in metrics:
        raise UsageError(
            "the champion rule compares every model with the naive baseline, which was not "
            "evaluated: add naive to the models"
        )
    lo, hi = coverage_band
    tol = f" + {mase_tolerance:.1%}" if mase_tolerance else ""
    rule = (
        f"rule: mean MASE <= naive's{tol} and 95% coverage inside {lo:.0%}–{hi:.0%}, "
        "then the lowest Winkler-95 score wins"
    )
    eligible, excluded = _eligibility(metrics, coverage_band, mase_tolerance)
    if not eligible:
        return "naive", (
            f"no model is eligible ({rule}); {'; '.join(excluded)}; "
            f"the naive baseline wins by default ({_describe(metrics, 'naive')})"
        )

    def complexity(name: str) -> float:
        if "complexity" in metrics[name]:
            return float(metrics[name]["complexity"])
        return float(model_complexity(name))

    def wink(name: str) -> float:
        return _score(metrics[name], "winkler_95")

    best = min(wink(n) for n in eligible)
    tied = [n for n in eligible if wink(n) <= best + _TIE * max(1.0, abs(best))]
    winner = min(tied, key=lambda n: (complexity(n), n))
    ranked = sorted((n for n in eligible if n != winner), key=lambda n: (wink(n), complexity(n)))
    reason = f"{winner} wins ({rule}): {_describe(metrics, winner)}"
    if len(tied) > 1:
        reason += f"; tied in Winkler-95 with {', '.join(n for n in tied if n != winner)}: "
        reason += "the simpler model wins"
    if ranked:
        reason += f"; runner-up {ranked[0]}: {_describe(metrics, ranked[0])}"
        if len(ranked) > 1:
            reason += f"; other eligible: {', '.join(ranked[1:])}"
    else:
        reason += "; no other model is eligible"
    if excluded:
        reason += f"; not eligible: {'; '.join(excluded)}"
    return winner, reason


# -- promotion decision ------------------------------------------------------------------------
@dataclass
class GateDecision:
    candidate: str
    passed: bool
    reason: str
    summary: dict[str, dict[str, float]] = field(default_factory=dict)


def decide(
    series: SeriesId,
    summary: dict[str, dict[str, float]],
    settings: Settings,
    serving_model: str | None,
) -> GateDecision:
    """Choose the candidate from per-model metrics and apply the quality gate and the
    not-worse-than-serving rule (compare_models' selection and gate logic, one code path)."""
    from pipeline.evaluation.gate import evaluate_gate, load_gate_config

    config = load_gate_config(Path(settings.gate_config))
    candidate, why = select_champion(summary)  # the same rule training and compare_models use
    outcome = evaluate_gate(series.name, summary, candidate, config)
    if not outcome.passed:
        failed = "; ".join(check.message for check in outcome.failures())
        return GateDecision(candidate, False, f"quality gate failed: {failed}", summary)
    cand_mase = summary[candidate].get("mase")
    if serving_model and serving_model in summary and cand_mase is not None:
        serving_mase = summary[serving_model].get("mase")
        if serving_mase is not None:
            limit = float(serving_mase) * (1 + settings.promotion_tolerance)
            if float(cand_mase) > limit:
                return GateDecision(
                    candidate,
                    False,
                    f"candidate {candidate} MASE {cand_mase:.4f} is worse than the serving "
                    f"champion's model {serving_model} ({serving_mase:.4f}) beyond the "
                    f"{settings.promotion_tolerance:.0%} tolerance",
                    summary,
                )
    return GateDecision(candidate, True, f"passed the quality gate; {why}", summary)


def backtest_gate(
    series: SeriesId, settings: Settings, result: Any, serving_model: str | None
) -> GateDecision:
    """The nightly gate on the selection backtest that training ran on recent data."""
    summary = {m: row for m, row in getattr(result, "backtest", {}).items() if m in result.versions}
    if not summary:
        return GateDecision(
            getattr(result, "champion", None) or "naive",
            False,
            "no selection backtest (too little data): the gate cannot judge the candidates",
        )
    return decide(series, summary, settings, serving_model)
