"""The champion and promotion decision: which model is served, and when the served one changes.

One module owns the whole decision, so that training, ``compare_models.py`` and the nightly
scheduler apply the same rule, with every threshold below, side by side:

1. **Eligibility and selection** (:func:`select_champion`). Among the models evaluated on the
   same backtest, a model is *eligible* when it forecast every origin, its mean MASE is not worse
   than the naive baseline's by more than :data:`SELECTION_MASE_TOLERANCE`, and its empirical 95%
   coverage lies inside :data:`SELECTION_COVERAGE_BAND`. The lowest mean Winkler-95 score wins;
   scores within :data:`TIE_TOLERANCE` (relative) are a tie, won by the simpler model. With no
   model eligible, the naive baseline (:data:`BASELINE_MODEL`) wins: it always competes
   (:func:`ensure_naive`).
2. **Training** (:func:`training_champion`) applies that rule to its selection backtest; a series
   too short to backtest is judged on its single holdout, with :data:`HOLDOUT_COVERAGE_BAND`.
3. **The quality gate** (:mod:`pipeline.evaluation.gate`) checks the chosen champion again, with
   thresholds that are user configuration: ``quality_gate.json`` (``--gate-config``, the
   ``GATE_CONFIG`` setting), so that a deployment can tighten or loosen them without a code
   change. The gate's built-in defaults are the ``GATE_*`` constants here and the committed file
   carries the same values (a test keeps them equal). The gate is deliberately looser than
   selection (:data:`GATE_COVERAGE_BAND` is wider than :data:`SELECTION_COVERAGE_BAND`,
   :data:`GATE_CHAMPION_MASE_TOLERANCE` is above :data:`SELECTION_MASE_TOLERANCE`): a champion
   chosen by the rule always passes, and a naive champion chosen because nothing was eligible
   still passes unless its own intervals are badly off.
4. **Promotion.** ``compare_models.py --promote`` promotes its champion unless the gate (when
   asked for with ``--gate``) failed (:func:`decide_comparison`). The nightly cycle
   (:func:`decide`) promotes a candidate only when it passes the gate and is not worse than the
   serving champion's model by more than the ``PROMOTION_TOLERANCE`` setting (default
   :data:`DEFAULT_PROMOTION_TOLERANCE`) on the same folds. While nothing is served yet a rejected
   candidate gives way to the naive baseline (:func:`bootstrap`), so the API always has a model.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import UsageError
from pipeline.series import SeriesId

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.evaluation.gate import GateConfig, GateOutcome

# -- every threshold of the decision ----------------------------------------------------------
#: The yardstick every champion must beat; it always competes and is the fallback champion.
BASELINE_MODEL = "naive"
#: Selection: the champion's empirical 95% coverage over a backtest must lie in this band.
SELECTION_COVERAGE_BAND: tuple[float, float] = (0.90, 0.99)
#: Selection: how much worse than naive's mean MASE a champion may be (0.0: not worse at all).
SELECTION_MASE_TOLERANCE = 0.0
#: Relative difference under which two scores count as equal (a Winkler tie, "not worse").
TIE_TOLERANCE = 1e-9
#: Training on one holdout (a series too short to backtest): one holdout of h points has a 95%
#: coverage of 100% or at most (h-1)/h, so any band but 0-100% would exclude every
#: well-calibrated model; the best Winkler score on the holdout decides.
HOLDOUT_COVERAGE_BAND: tuple[float, float] = (0.0, 1.0)
#: Gate default (``champion_mase_tolerance``): the champion's mean MASE <= naive's x (1 + this).
GATE_CHAMPION_MASE_TOLERANCE = 0.05
#: Gate default (``coverage_95_min``, ``coverage_95_max``): the champion's 95% coverage band.
GATE_COVERAGE_BAND: tuple[float, float] = (0.85, 0.99)
#: Gate default (``baseline_mase_tolerance``): each model's MASE <= its baseline x (1 + this).
GATE_BASELINE_MASE_TOLERANCE = 0.01
#: Gate default (``baseline_winkler_tolerance``): each Winkler-95 <= its baseline x (1 + this).
GATE_BASELINE_WINKLER_TOLERANCE = 0.02
#: Absolute slack on the gate's MASE limits (floating-point noise only).
GATE_MASE_SLACK = 1e-12
#: Promotion (``PROMOTION_TOLERANCE``): a candidate may be worse than the serving champion's
#: model by at most this fraction of its mean MASE.
DEFAULT_PROMOTION_TOLERANCE = 0.02


def ensure_naive(models: Sequence[str]) -> list[str]:
    """The naive baseline always competes: add it first when missing."""
    names = list(models)
    return names if BASELINE_MODEL in names else [BASELINE_MODEL, *names]


# -- champion selection ---------------------------------------------------------------------
def _score(row: Mapping[str, float], key: str) -> float:
    value = float(row.get(key, float("nan")))
    return value if math.isfinite(value) else math.inf


def _mase(row: Mapping[str, float]) -> float:
    return _score(row, "mase")


def _within(value: float, limit: float) -> bool:
    """``value <= limit`` up to :data:`TIE_TOLERANCE` (relative)."""
    return value <= limit + TIE_TOLERANCE * max(1.0, abs(limit))


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.3f}x naive" if 0 < reference < math.inf else "naive has none"


def _describe(metrics: Mapping[str, Mapping[str, float]], name: str) -> str:
    """``MASE 1.000 (1.000x naive), 95% coverage 95.0%, Winkler-95 37,000 (0.959x naive)``."""
    row, naive = metrics[name], metrics[BASELINE_MODEL]
    mase, wink = _mase(row), _score(row, "winkler_95")
    cov = float(row.get("coverage_95", math.nan))
    if name == BASELINE_MODEL:
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
    naive_mase = _mase(metrics[BASELINE_MODEL])
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
        elif not _within(mase, limit):
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
    metrics: Mapping[str, Mapping[str, float]],
    *,
    coverage_band: tuple[float, float] = SELECTION_COVERAGE_BAND,
    mase_tolerance: float = SELECTION_MASE_TOLERANCE,
) -> tuple[str, str]:
    """(model, reason) by the champion rule: calibrated, not worse than naive, sharpest.

    A model is *eligible* when its mean MASE is not worse than the naive baseline's by more
    than ``mase_tolerance`` (a fraction; 0 = not worse at all) and its empirical 95% coverage
    lies inside ``coverage_band``. Among the eligible models the lowest mean Winkler (interval)
    score at 95% wins; scores within :data:`TIE_TOLERANCE` (relative) go to the simpler model
    (``complexity`` in the metrics, else the forecaster class's). Naive always competes. Models
    that failed at some origin, or have no MASE or Winkler score, cannot win. When no model is
    eligible, naive wins and the reason says why. The reason names the rule, the winner's MASE,
    coverage and Winkler against naive's, and the runner-up.
    """
    if not metrics:
        raise UsageError("no model results to choose a champion from")
    if BASELINE_MODEL not in metrics:
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
        return BASELINE_MODEL, (
            f"no model is eligible ({rule}); {'; '.join(excluded)}; "
            f"the naive baseline wins by default ({_describe(metrics, BASELINE_MODEL)})"
        )

    def complexity(name: str) -> float:
        if "complexity" in metrics[name]:
            return float(metrics[name]["complexity"])
        from pipeline.evaluation.folds import model_complexity

        return float(model_complexity(name))

    def wink(name: str) -> float:
        return _score(metrics[name], "winkler_95")

    best = min(wink(n) for n in eligible)
    tied = [n for n in eligible if _within(wink(n), best)]
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


def training_champion(
    trained: Iterable[str],
    backtest: Mapping[str, Mapping[str, float]],
    holdout: Mapping[str, Mapping[str, float]],
) -> tuple[str, str]:
    """(model, reason) among the ``trained`` models: the rule on the selection backtest, or on
    the holdout metrics (with :data:`HOLDOUT_COVERAGE_BAND`) when there was none."""
    names = sorted(trained)
    if backtest:
        ordered = {m: backtest[m] for m in names if m in backtest}
        champion, reason = select_champion(ordered)
        return champion, f"selection backtest: {reason}"
    champion, reason = select_champion(
        {m: holdout[m] for m in names}, coverage_band=HOLDOUT_COVERAGE_BAND
    )
    return champion, f"holdout (too little data to backtest): {reason}"


# -- compare_models: selection, then the gate -----------------------------------------------
@dataclass
class ComparisonDecision:
    """The champion of one comparison run and, when it was asked for, the gate's outcome."""

    champion: str
    reason: str
    gate: GateOutcome | None = None

    @property
    def promotable(self) -> bool:
        """``--promote`` may go ahead: no gate was asked for, or it passed."""
        return self.gate is None or self.gate.passed


def decide_comparison(
    series: str,
    summary: Mapping[str, Mapping[str, float]],
    *,
    coverage_band: tuple[float, float] = SELECTION_COVERAGE_BAND,
    mase_tolerance: float = SELECTION_MASE_TOLERANCE,
    gate_config: GateConfig | None = None,
    baseline_entry: Mapping[str, Any] | None = None,
) -> ComparisonDecision:
    """Select the champion of a backtest summary and, with a ``gate_config``, gate it."""
    champion, reason = select_champion(
        summary, coverage_band=coverage_band, mase_tolerance=mase_tolerance
    )
    if gate_config is None:
        return ComparisonDecision(champion, reason)
    from pipeline.evaluation.gate import evaluate_gate

    outcome = evaluate_gate(series, summary, champion, gate_config, baseline_entry=baseline_entry)
    return ComparisonDecision(champion, reason, outcome)


# -- the nightly promotion decision -----------------------------------------------------------
@dataclass
class GateDecision:
    candidate: str
    passed: bool
    reason: str
    summary: dict[str, dict[str, float]] = field(default_factory=dict)


def worse_than_serving(
    summary: Mapping[str, Mapping[str, float]],
    candidate: str,
    serving_model: str | None,
    tolerance: float,
) -> str | None:
    """Why ``candidate`` may not replace the serving champion's model (``None``: it may).

    Both are compared on the same folds: the candidate's mean MASE may exceed the serving
    model's by at most ``tolerance`` (a fraction).
    """
    cand_mase = summary[candidate].get("mase")
    if not serving_model or serving_model not in summary or cand_mase is None:
        return None
    serving_mase = summary[serving_model].get("mase")
    if serving_mase is None or float(cand_mase) <= float(serving_mase) * (1 + tolerance):
        return None
    return (
        f"candidate {candidate} MASE {cand_mase:.4f} is worse than the serving "
        f"champion's model {serving_model} ({serving_mase:.4f}) beyond the "
        f"{tolerance:.0%} tolerance"
    )


def decide(
    series: SeriesId,
    summary: dict[str, dict[str, float]],
    settings: Settings,
    serving_model: str | None,
) -> GateDecision:
    """Choose the candidate from per-model metrics and apply the quality gate and the
    not-worse-than-serving rule (compare_models' selection and gate logic, one code path)."""
    from pipeline.evaluation.gate import load_gate_config

    config = load_gate_config(Path(settings.gate_config))
    comparison = decide_comparison(series.name, summary, gate_config=config)
    candidate, outcome = comparison.champion, comparison.gate
    if outcome is not None and not outcome.passed:
        failed = "; ".join(check.message for check in outcome.failures())
        return GateDecision(candidate, False, f"quality gate failed: {failed}", summary)
    worse = worse_than_serving(summary, candidate, serving_model, settings.promotion_tolerance)
    if worse is not None:
        return GateDecision(candidate, False, worse, summary)
    return GateDecision(candidate, True, f"passed the quality gate; {comparison.reason}", summary)


def backtest_gate(
    series: SeriesId, settings: Settings, result: Any, serving_model: str | None
) -> GateDecision:
    """The nightly gate on the selection backtest that training ran on recent data."""
    summary = {m: row for m, row in getattr(result, "backtest", {}).items() if m in result.versions}
    if not summary:
        return GateDecision(
            getattr(result, "champion", None) or BASELINE_MODEL,
            False,
            "no selection backtest (too little data): the gate cannot judge the candidates",
        )
    return decide(series, summary, settings, serving_model)


def bootstrap(
    decision: GateDecision, serving_model: str | None, trained: Collection[str]
) -> GateDecision | None:
    """The first champion of a series nothing is served for yet, when the candidate was rejected.

    The naive baseline (the yardstick every candidate must beat) is promoted, so the API is not
    left without a model. ``None`` when the decision stands: the candidate passed, a champion
    is already served, or naive was not trained.
    """
    if decision.passed or serving_model is not None or BASELINE_MODEL not in trained:
        return None
    return GateDecision(
        BASELINE_MODEL,
        True,
        f"bootstrap: no champion yet, serving naive; {decision.reason}",
        decision.summary,
    )
