"""The live rule of the nightly promotion: the forecast ledger's figures beside the backtest gate.

The backtest gate (:func:`pipeline.evaluation.champion.backtest_gate`) judges a candidate on the
selection backtest; :func:`live_promotion` then judges the same decision on what the ledger
recorded of the models' live forecasts (every loaded model issues, champion and shadows, keyed
by model name, so a candidate's live record is its model's shadow record):

1. **Not worse than the champion on live WIS.** A candidate that passed the gate and is not the
   serving model is rejected when its live WIS over the last ``LIVE_PROMOTION_MIN_POINTS``
   matured points both models scored (:func:`pipeline.ledger.read.paired_comparison`) exceeds
   the champion's by more than ``LIVE_PROMOTION_TOLERANCE`` (relative). With fewer common
   points the rule is skipped and the gate alone decides.
2. **A calibrated champion.** The serving champion's live 95% coverage over ``TRUST_WINDOW`` is
   tested as the ledger's trust status and the ``ledger_coverage_95_low`` metric test it
   (:func:`pipeline.ledger.read.trust_status`: at least ``TRUST_MIN_POINTS`` points and the
   upper end of the Wilson interval below 95%). A champion failing it raises an alert (kept in
   the run record, sent to the alert webhook) and, with ``LIVE_CALIBRATION_FALLBACK``, the
   series falls back to the best calibrated model trained in the cycle (trust status ``ok``,
   lowest live WIS ratio to naive), unless the decision already replaces the champion.

Every reason names the live figures it used. The ledger unreachable or too few points skip the
rule with a reason saying so: the live rule never fails a cycle.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.evaluation.champion import GateDecision

if TYPE_CHECKING:
    from pipeline.config import Settings
    from pipeline.ledger.db import Ledger
    from pipeline.ledger.read import Leaderboard, LeaderboardRow, PairedComparison
    from pipeline.series import SeriesId

logger = logging.getLogger(__name__)

#: Matured points both models need before live WIS can block a promotion (the setting's default).
DEFAULT_LIVE_MIN_POINTS = 60
#: How much worse than the champion's live WIS a candidate's may be (relative; the default).
DEFAULT_LIVE_TOLERANCE = 0.02
#: The key of the live figures in a series outcome's ``metrics`` (the run record).
LIVE_KEY = "live"
#: The key of the alert text among the live figures.
ALERT_KEY = "alert"


@dataclass
class LiveCheck:
    """The decision after the live rule, the figures it used (for the run record) and the
    alert it raised (``None``: none)."""

    decision: GateDecision
    figures: dict[str, Any] = field(default_factory=dict)
    alert: str | None = None


def live_alert(metrics: Mapping[str, Any]) -> str | None:
    """The live alert kept in a series outcome's ``metrics`` (``None``: none)."""
    live = metrics.get(LIVE_KEY)
    return live.get(ALERT_KEY) if isinstance(live, Mapping) else None


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def wis_rule(
    cmp: PairedComparison, candidate: str, serving: str, settings: Settings
) -> tuple[bool | None, str]:
    """Whether ``candidate`` may replace ``serving`` on live WIS (``None``: too few points to
    tell), and the sentence saying why with the figures."""
    needed = settings.live_promotion_min_points
    if cmp.n < needed or cmp.ratio is None:
        return None, (
            f"live WIS rule skipped: {cmp.n} matured point(s) common to {candidate} and the "
            f"champion {serving}, {needed} needed"
        )
    p_worse = None if cmp.p_better is None else 1.0 - cmp.p_better
    limit = 1.0 + settings.live_promotion_tolerance
    figures = f"live WIS {cmp.ratio:.3f}x the champion {serving}'s over {cmp.n} matured points"
    if cmp.ratio > limit:
        return False, (
            f"{figures} (one-sided Diebold-Mariano p={_p(p_worse)} that {candidate} is worse), "
            f"above the {settings.live_promotion_tolerance:.0%} tolerance"
        )
    return True, f"{figures} (p={_p(cmp.p_better)} that {candidate} is better)"


def coverage_low(row: LeaderboardRow | None, settings: Settings) -> tuple[bool | None, str]:
    """The live calibration test of one model (``None``: too few points to test), with its
    figures: the trust status' coverage test (``ledger_coverage_95_low``)."""
    from pipeline.ledger.read import trust_status

    window = settings.trust_window
    n = int(row.figures["n"] or 0) if row is not None else 0
    if row is None or n < settings.trust_min_points:
        return None, (
            f"live calibration not tested: {n} matured point(s) in {window}, "
            f"{settings.trust_min_points} needed"
        )
    cov, high = row.figures["coverage_95"], row.figures["coverage_95_high"]
    status, _ = trust_status(_float(high), n, None, settings)
    figures = (
        f"live 95% coverage {_pct(cov)} over {n} matured points in {window} "
        f"(Wilson upper bound {_pct(high)})"
    )
    if status == "degraded":
        return True, f"{figures}: significantly below nominal"
    return False, figures


def best_calibrated(
    board: Leaderboard, trained: Collection[str], exclude: str, settings: Settings
) -> LeaderboardRow | None:
    """The model to fall back to: trained in this cycle, not ``exclude``, trust status ``ok``
    (enough points, 95% coverage not significantly low, WIS ratio within
    ``TRUST_MAX_WIS_RATIO``), the lowest live WIS ratio to naive (then WIS, then coverage
    closest to 95%)."""
    from pipeline.ledger.read import trust_status

    def ok(row: LeaderboardRow) -> bool:
        f = row.figures
        status, _ = trust_status(
            _float(f["coverage_95_high"]), int(f["n"] or 0), _float(f["wis_ratio"]), settings
        )
        return status == "ok"

    usable = [r for r in board.rows if r.model in trained and r.model != exclude and ok(r)]
    return min(usable, key=_rank, default=None)


def _rank(row: LeaderboardRow) -> tuple[float, float, float, str]:
    f = row.figures
    cov = _float(f["coverage_95"])
    return (
        _or_inf(_float(f["wis_ratio"])),
        _or_inf(_float(f["wis"])),
        abs(cov - 0.95) if cov is not None else math.inf,
        row.model,
    )


def judge(
    decision: GateDecision,
    serving: str,
    trained: Collection[str],
    cmp: PairedComparison | None,
    board: Leaderboard,
    settings: Settings,
) -> LiveCheck:
    """Apply the live rule (see the module docstring) to the gate's ``decision``."""
    figures: dict[str, Any] = {"points_needed": settings.live_promotion_min_points}
    notes: list[str] = []
    candidate, rejected = decision.candidate, None
    if cmp is not None:
        allowed, text = wis_rule(cmp, candidate, serving, settings)
        figures.update(n=cmp.n, wis_ratio=cmp.ratio, p_better=cmp.p_better)
        if allowed is False:
            rejected = f"rejected on live data: {text}"
            decision = GateDecision(candidate, False, decision.reason, decision.summary)
        else:
            notes.append(text)
    elif decision.passed and candidate == serving:
        notes.append(f"live WIS rule not needed: {candidate} is the serving model")
    champ = next((r for r in board.rows if r.model == serving), None)
    low, text = coverage_low(champ, settings)
    if champ is not None:
        figures.update(
            window=settings.trust_window,
            champion_points=champ.figures["n"],
            champion_coverage_95=champ.figures["coverage_95"],
            champion_coverage_95_high=champ.figures["coverage_95_high"],
        )
    notes.append(f"champion {serving}: {text}")
    alert = None
    if low:
        alert = f"champion {serving} fails the live calibration test: {text}"
        figures[ALERT_KEY] = alert
        replaced = decision.passed and candidate != serving
        if replaced or not settings.live_calibration_fallback:
            notes.append(
                f"{candidate} replaces it" if replaced else "no fallback (LIVE_CALIBRATION_FALLBACK"
                " is off)"
            )  # fmt: skip
        elif (best := best_calibrated(board, trained, serving, settings)) is not None:
            _, best_text = coverage_low(best, settings)
            figures["fallback"] = best.model
            ratio = _float(best.figures["wis_ratio"])
            because = [
                *([rejected] if rejected else []),
                f"{best.model} is the best calibrated model ({best_text}, live WIS "
                f"{_ratio(ratio)} naive's)",
            ]
            reason = f"live calibration fallback: {alert}; {'; '.join(because)}"
            decision = GateDecision(
                best.model, True, f"{reason}; backtest: {decision.reason}", decision.summary
            )
            return LiveCheck(decision, figures, alert)
        else:
            notes.append("no model passes the live calibration test to fall back to")
    if rejected is not None:
        reason = f"{rejected}; {'; '.join(notes)}; backtest: {decision.reason}"
        return LiveCheck(GateDecision(candidate, False, reason, decision.summary), figures, alert)
    return LiveCheck(_noted(decision, "; ".join(notes)), figures, alert)


def live_promotion(
    series: SeriesId,
    settings: Settings,
    decision: GateDecision,
    serving: str | None,
    trained: Collection[str],
    *,
    ledger: Ledger | None = None,
) -> LiveCheck:
    """The gate's ``decision`` judged on the ledger's live figures (``ledger``, or the
    configured one opened here). Never raises: without a serving champion or a readable ledger
    the decision stands, its reason saying why the live rule was skipped."""
    if serving is None:
        return LiveCheck(_noted(decision, "live rule skipped: no serving champion yet"))
    from pipeline.ledger.db import open_ledger
    from pipeline.ledger.read import leaderboard, paired_comparison

    compare = decision.passed and decision.candidate != serving
    try:
        opened = ledger if ledger is not None else open_ledger(settings)
        try:
            cmp = None
            if compare:
                cmp = paired_comparison(
                    opened, series.name, decision.candidate, serving,
                    settings.live_promotion_min_points,
                )  # fmt: skip
            board = leaderboard(opened, series.name, window=settings.trust_window)
        finally:
            if ledger is None:
                opened.close()
    except Exception as exc:  # noqa: BLE001 - the live rule must never fail the cycle
        why = str(exc).split("; ")[0]
        logger.warning("%s: live promotion rule skipped: %s", series.name, why)
        note = f"live rule skipped: the forecast ledger cannot be read ({why})"
        return LiveCheck(_noted(decision, note), {"skipped": note})
    check = judge(decision, serving, trained, cmp, board, settings)
    if check.alert is not None:
        logger.warning("%s: %s", series.name, check.alert, extra={"series": series.name})
    return check


def _noted(decision: GateDecision, note: str) -> GateDecision:
    return GateDecision(
        decision.candidate, decision.passed, f"{decision.reason}; {note}", decision.summary
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else value


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}x"
