"""Eligibility and the words of the champion rule: which models may win, and how to say why.

The thresholds are :mod:`pipeline.evaluation.champion`'s; these helpers take them as arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def score_of(row: Mapping[str, float], key: str) -> float:
    value = float(row.get(key, float("nan")))
    return value if math.isfinite(value) else math.inf


def _mase(row: Mapping[str, float]) -> float:
    return score_of(row, "mase")


def within(value: float, limit: float, tie_tolerance: float) -> bool:
    """``value <= limit`` up to ``tie_tolerance`` (relative)."""
    return value <= limit + tie_tolerance * max(1.0, abs(limit))


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.3f}x naive" if 0 < reference < math.inf else "naive has none"


def describe(metrics: Mapping[str, Mapping[str, float]], baseline: str, name: str) -> str:
    """``MASE 1.000 (1.000x naive), 95% coverage 95.0%, Winkler-95 37,000 (0.959x naive)``,
    then ``, WIS 9,000 (0.980x naive)`` when the metrics have a WIS."""
    row, naive = metrics[name], metrics[baseline]
    mase, wink = _mase(row), score_of(row, "winkler_95")
    cov = float(row.get("coverage_95", math.nan))
    wis = f", WIS {_num(score_of(row, 'wis'))}" if "wis" in row else ""
    if name == baseline:
        return f"MASE {mase:.3f}, 95% coverage {cov:.1%}, Winkler-95 {_num(wink)}{wis}"
    if wis:
        wis += f" ({_ratio(score_of(row, 'wis'), score_of(naive, 'wis'))})"
    return (
        f"MASE {mase:.3f} ({_ratio(mase, _mase(naive))}), 95% coverage {cov:.1%}, "
        f"Winkler-95 {_num(wink)} ({_ratio(wink, score_of(naive, 'winkler_95'))}){wis}"
    )


def rule_words(
    coverage_band: tuple[float, float],
    mase_tolerance: float,
    label: str,
    alpha: float | None,
    anchor: str | None,
) -> str:
    """The rule in words, as a selection's reason states it (``alpha``: the significance level
    when the choice was tested, ``anchor``: the anchor model when it competed)."""
    lo, hi = coverage_band
    tol = f" + {mase_tolerance:.1%}" if mase_tolerance else ""
    text = (
        f"rule: mean MASE <= naive's{tol} and 95% coverage inside {lo:.0%}–{hi:.0%}, "
        f"then the lowest {label} {'wins' if label == 'WIS' else 'score wins'}"
    )
    if alpha is not None:
        text += f", changes need one-sided DM p < {alpha:g}"
        if anchor is not None:
            text += f", {anchor} unless beaten with confidence"
    return text


def inside(value: float, band: tuple[float, float]) -> bool:
    return band[0] <= value <= band[1]


def eligibility(
    metrics: Mapping[str, Mapping[str, float]],
    baseline: str,
    coverage_band: tuple[float, float],
    mase_tolerance: float,
    tie_tolerance: float,
    own_bands: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[list[str], list[str]]:
    """(eligible models, why the others are not): every origin forecast, mean MASE not worse
    than ``baseline``'s by more than ``mase_tolerance``, 95% coverage inside ``coverage_band``
    (inside its own band for a model in ``own_bands``)."""
    lo, hi = coverage_band
    bands = own_bands or {}
    naive_mase = _mase(metrics[baseline])
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
        elif score_of(row, "winkler_95") == math.inf:
            failed.append(f"{name} has no Winkler-95 score")
        elif not within(mase, limit, tie_tolerance):
            worse.append(f"{name} {mase:.3f}")
        elif not (math.isfinite(cov) and inside(cov, bands.get(name, coverage_band))):
            band = bands.get(name)
            own = f" (its band {band[0]:.0%}–{band[1]:.0%})" if band is not None else ""
            uncalibrated.append(f"{name} {cov:.1%}{own}")
        else:
            eligible.append(name)
    excluded = failed
    if worse:
        tol = f" + {mase_tolerance:.1%}" if mase_tolerance else ""
        excluded.append(f"MASE worse than naive's {naive_mase:.3f}{tol}: {', '.join(worse)}")
    if uncalibrated:
        excluded.append(f"95% coverage outside {lo:.0%}–{hi:.0%}: {', '.join(uncalibrated)}")
    return eligible, excluded


__all__ = ["describe", "eligibility", "inside", "rule_words", "score_of", "within"]
