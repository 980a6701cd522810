"""The champion and promotion decision: which model is served, and when the served one changes.

One module owns the whole decision, so that training, ``compare_models.py`` and the nightly
scheduler apply the same rule, with every threshold below, side by side:

1. **Eligibility and selection** (:func:`select_champion`, whose docstring gives the rule in
   full). Among the models evaluated on the same backtest, the calibrated ones not worse than
   naive (:data:`BASELINE_MODEL`, which always competes and wins when nothing is eligible)
   compete on mean WIS. Under the default rule (:data:`SELECTION_RULE`, ``"evidence"``) the
   anchor (:func:`anchor_for`: :data:`ANCHOR_MODEL`, or the frequency's own in
   :data:`FREQ_ANCHORS`) is served unless a challenger's WIS is lower with confidence
   (:func:`pipeline.evaluation.evidence.judge`); without evidence the random-walk median is
   served with the best band.
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

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import UsageError
from pipeline.evaluation.eligibility import describe, eligibility, rule_words, score_of, within
from pipeline.series import SeriesId

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.evaluation.evidence import Evidence
    from pipeline.evaluation.gate import GateConfig, GateOutcome

# -- every threshold of the decision ----------------------------------------------------------
#: The yardstick every champion must beat; it always competes and is the fallback champion.
BASELINE_MODEL = "naive"
#: Selection: the champion's empirical 95% coverage over a backtest must lie in this band.
SELECTION_COVERAGE_BAND: tuple[float, float] = (0.90, 0.99)
#: Selection: how much worse than naive's mean MASE a champion may be (0.0: not worse at all).
SELECTION_MASE_TOLERANCE = 0.0
#: Selection rules: "evidence" (the anchor, significance tests and hysteresis on per-origin
#: scores) or "means" (the lowest mean Winkler-95 among the eligible models, nothing else).
SELECTION_RULES = ("evidence", "means")
#: The rule training, compare_models and the nightly gate apply. On the replay of BTC daily,
#: BTC hourly and ETH daily 2018-2021 (docs/results/replay.md) "evidence" served MASE 1.000x
#: naive and a lower WIS than naive on all three series, within 0.5% of the best fixed model;
#: "means" chased noise (MASE up to 1.013x, WIS up to 1.006x naive, 16-38 champion changes).
SELECTION_RULE = "evidence"
#: Selection ("evidence" rule): the model served unless a challenger's WIS is lower with
#: confidence: the equal-weight quantile average of the random-walk-median bands (why: the replay,
#: docs/evaluation.md). To become champion its 95% coverage must lie in GATE_COVERAGE_BAND (the
#: gate would reject it outside); once serving, any (SERVING_ANCHOR_BAND): the coverage of 8
#: overlapping paths swings by 20 points from month to month, noise, not evidence.
ANCHOR_MODEL = "band_average"
SERVING_ANCHOR_BAND: tuple[float, float] = (0.0, 1.0)
#: Selection ("evidence" rule): the anchor of intraday series when it was evaluated (else
#: ANCHOR_MODEL). The band average with its 80% band calibrated on the training window's own
#: volatility-normalised errors: hourly returns have fatter tails than the members' band shape,
#: so the plain band average covered 85.7% at 80% on the BTC hourly replay.
FREQ_ANCHORS: dict[str, str] = {"1h": "calibrated_band_average", "4h": "calibrated_band_average"}
#: Selection ("evidence" rule): one-sided Diebold-Mariano p-value under which a lower score counts
#: as evidence. 0.01 rather than 0.05: the test runs at every nightly decision over overlapping
#: windows, and at 0.05 the replay served drift through the May 2021 crash (WIS 1.039x naive).
EVIDENCE_ALPHA = 0.01
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
#: Gate default (``champion_wis_tolerance``): the champion's WIS <= naive's x (1 + this).
GATE_CHAMPION_WIS_TOLERANCE = 0.02
#: Gate default (``baseline_wis_tolerance``): each model's WIS <= its baseline x (1 + this).
GATE_BASELINE_WIS_TOLERANCE = 0.01
#: Absolute slack on the gate's MASE limits (floating-point noise only).
GATE_MASE_SLACK = 1e-12
#: Promotion (``PROMOTION_TOLERANCE``): a candidate may be worse than the serving champion's
#: model by at most this fraction of its mean MASE.
DEFAULT_PROMOTION_TOLERANCE = 0.02


def anchor_for(freq: str | None, evaluated: Collection[str]) -> str:
    """The anchor of a series of frequency ``freq`` among the ``evaluated`` models: the
    frequency's own (:data:`FREQ_ANCHORS`) when it was evaluated, else :data:`ANCHOR_MODEL`."""
    own = FREQ_ANCHORS.get(freq or "")
    return own if own is not None and own in evaluated else ANCHOR_MODEL


def ensure_naive(models: Sequence[str]) -> list[str]:
    """The naive baseline always competes: add it first when missing."""
    names = list(models)
    return names if BASELINE_MODEL in names else [BASELINE_MODEL, *names]


# -- champion selection ---------------------------------------------------------------------
def select_champion(
    metrics: Mapping[str, Mapping[str, float]],
    *,
    coverage_band: tuple[float, float] = SELECTION_COVERAGE_BAND,
    mase_tolerance: float = SELECTION_MASE_TOLERANCE,
    evidence: Evidence | None = None,
    incumbent: str | None = None,
    rule: str = SELECTION_RULE,
    anchor: str | None = ANCHOR_MODEL,
) -> tuple[str, str]:
    """(model, reason) by the champion rule: calibrated, not worse than naive, best score.

    A model is *eligible* when its mean MASE is not worse than the naive baseline's by more
    than ``mase_tolerance`` (a fraction; 0 = not worse at all) and its empirical 95% coverage
    lies inside ``coverage_band``. Among the eligible models the lowest mean WIS wins (the
    lowest Winkler-95 when the metrics have no ``wis``, or under the ``"means"`` rule); scores
    within :data:`TIE_TOLERANCE` (relative) go to the simpler model (``complexity`` in the
    metrics, else the forecaster class's). Naive always competes. Models that failed at some
    origin, or have no MASE or Winkler score, cannot win. When no model is eligible, naive wins.

    Under the ``"evidence"`` rule with per-origin ``evidence`` the winner must also pass the
    significance tests of :func:`pipeline.evaluation.evidence.judge` (against naive, against
    the ``anchor`` when it is eligible, and against the serving ``incumbent``); without
    evidence the reason says that nothing was tested. The reason names the rule, the winner's
    scores against naive's, and the runner-up.
    """
    if not metrics:
        raise UsageError("no model results to choose a champion from")
    if rule not in SELECTION_RULES:
        raise UsageError(f"unknown selection rule {rule!r}: use {' or '.join(SELECTION_RULES)}")
    if BASELINE_MODEL not in metrics:
        raise UsageError(
            "the champion rule compares every model with the naive baseline, which was not "
            "evaluated: add naive to the models"
        )
    key = "wis" if rule != "means" and all("wis" in r for r in metrics.values()) else "winkler_95"
    label = "WIS" if key == "wis" else "Winkler-95"
    tested = rule == "evidence" and evidence is not None and evidence.has(BASELINE_MODEL)
    rule_text = rule_words(
        coverage_band,
        mase_tolerance,
        label,
        EVIDENCE_ALPHA if tested else None,
        anchor if anchor in metrics else None,
    )
    own = None
    if tested and anchor is not None:
        own = {anchor: SERVING_ANCHOR_BAND if incumbent == anchor else GATE_COVERAGE_BAND}
    eligible, excluded = eligibility(
        metrics, BASELINE_MODEL, coverage_band, mase_tolerance, TIE_TOLERANCE, own
    )
    if not eligible:
        return BASELINE_MODEL, (
            f"no model is eligible ({rule_text}); {'; '.join(excluded)}; "
            "the naive baseline wins by default "
            f"({describe(metrics, BASELINE_MODEL, BASELINE_MODEL)})"
        )

    def complexity(name: str) -> float:
        if "complexity" in metrics[name]:
            return float(metrics[name]["complexity"])
        from pipeline.evaluation.folds import model_complexity

        return float(model_complexity(name))

    def score(name: str) -> float:
        return score_of(metrics[name], key)

    best = min(score(n) for n in eligible)
    tied = [n for n in eligible if within(score(n), best, TIE_TOLERANCE)]
    winner = min(tied, key=lambda n: (complexity(n), n))
    ranked = sorted((n for n in eligible if n != winner), key=lambda n: (score(n), complexity(n)))
    notes: list[str] = []
    if tested and evidence is not None:
        from pipeline.evaluation.evidence import judge

        winner, notes = judge(
            evidence,
            [winner, *ranked],
            baseline=BASELINE_MODEL,
            incumbent=incumbent,
            alpha=EVIDENCE_ALPHA,
            anchor=anchor,
        )
        ranked = [n for n in [*tied, *ranked] if n != winner]
        tied = [winner]
    reason = f"{winner} wins ({rule_text}): {describe(metrics, BASELINE_MODEL, winner)}"
    if len(tied) > 1:
        reason += f"; tied in {label} with {', '.join(n for n in tied if n != winner)}: "
        reason += "the simpler model wins"
    reason += "".join(f"; {note}" for note in notes)
    if rule == "evidence" and not tested:
        reason += "; no per-origin scores: nothing was tested for significance"
    if ranked:
        reason += f"; runner-up {ranked[0]}: {describe(metrics, BASELINE_MODEL, ranked[0])}"
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
    *,
    evidence: Evidence | None = None,
    incumbent: str | None = None,
    freq: str | None = None,
) -> tuple[str, str]:
    """(model, reason) among the ``trained`` models: the rule on the selection backtest (with
    its per-origin ``evidence``, the serving ``incumbent`` and the anchor of the series'
    ``freq``), or on the holdout metrics (with :data:`HOLDOUT_COVERAGE_BAND`) when there was
    none."""
    names = sorted(trained)
    if backtest:
        ordered = {m: backtest[m] for m in names if m in backtest}
        champion, reason = select_champion(
            ordered,
            evidence=evidence.restrict(ordered) if evidence is not None else None,
            incumbent=incumbent,
            anchor=anchor_for(freq, ordered),
        )
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
    evidence: Evidence | None = None,
    incumbent: str | None = None,
    rule: str = SELECTION_RULE,
    freq: str | None = None,
) -> ComparisonDecision:
    """Select the champion of a backtest summary (with its per-origin ``evidence``, the
    serving ``incumbent`` and the anchor of ``freq``, see :func:`select_champion`) and, with a
    ``gate_config``, gate it."""
    champion, reason = select_champion(
        summary,
        coverage_band=coverage_band,
        mase_tolerance=mase_tolerance,
        evidence=evidence,
        incumbent=incumbent,
        rule=rule,
        anchor=anchor_for(freq, summary),
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
    *,
    evidence: Evidence | None = None,
    rule: str = SELECTION_RULE,
) -> GateDecision:
    """Choose the candidate from per-model metrics (and per-origin ``evidence``, the serving
    model as the incumbent) and apply the quality gate and the not-worse-than-serving rule
    (compare_models' selection and gate logic, one code path)."""
    from pipeline.evaluation.gate import load_gate_config

    config = load_gate_config(Path(settings.gate_config))
    comparison = decide_comparison(
        series.name,
        summary,
        gate_config=config,
        evidence=evidence,
        incumbent=serving_model,
        rule=rule,
        freq=series.freq,
    )
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
    """The nightly gate on the selection backtest that training ran on recent data (with its
    per-origin scores, ``result.evidence``, when training kept them)."""
    summary = {m: row for m, row in getattr(result, "backtest", {}).items() if m in result.versions}
    evidence: Evidence | None = getattr(result, "evidence", None)
    if not summary:
        return GateDecision(
            getattr(result, "champion", None) or BASELINE_MODEL,
            False,
            "no selection backtest (too little data): the gate cannot judge the candidates",
        )
    restricted = evidence.restrict(summary) if evidence is not None else None
    return decide(series, summary, settings, serving_model, evidence=restricted)


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
