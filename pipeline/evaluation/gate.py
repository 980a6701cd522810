"""The model-quality gate: committed thresholds, a committed baseline, and the rules between them.

Rules (thresholds in ``quality_gate.json``; the built-in defaults and how they relate to champion
selection are in :mod:`pipeline.evaluation.champion`):

1. ``champion_vs_naive``: the champion's mean MASE <= naive's mean MASE x (1 + tolerance).
2. ``champion_wis_vs_naive``: the champion's mean WIS <= naive's mean WIS x (1 + tolerance): the
   served forecast, scored as a whole distribution, must not lose to the random walk.
3. ``champion_coverage_95``: the champion's empirical 95% coverage is inside the band.
4. ``all_folds_fit``: every model produced a forecast at every origin.
5. ``baseline_<model>`` (with a baseline): each model's mean MASE <= its baseline MASE x
   (1 + tolerance).
6. ``baseline_wis_<model>`` (with a baseline): each model's mean WIS <= its baseline WIS x
   (1 + tolerance): most models share naive's point forecast, so a regression in their bands
   would not show in MASE; WIS scores the median and both bands at once.
7. ``baseline_winkler_<model>`` (with a baseline): the same on the Winkler-95 score alone, the
   tail check (a 95% band that widens or misses more moves WIS only by its 1/40 weight).

Rules on WIS are skipped, with a note, when the metrics (or the baseline entry) have no ``wis``
(a summary or baseline recorded before WIS existed). The baseline
(:mod:`pipeline.evaluation.baseline`) is only comparable on the same data and protocol; anything
else is a usage error (exit 2), never a silent pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.evaluation.champion import (
    BASELINE_MODEL,
    GATE_BASELINE_MASE_TOLERANCE,
    GATE_BASELINE_WINKLER_TOLERANCE,
    GATE_BASELINE_WIS_TOLERANCE,
    GATE_CHAMPION_MASE_TOLERANCE,
    GATE_CHAMPION_WIS_TOLERANCE,
    GATE_COVERAGE_BAND,
    GATE_MASE_SLACK,
    TIE_TOLERANCE,
)

#: Thresholds a gate config may leave out (older files): their built-in defaults.
OPTIONAL_THRESHOLDS = {
    "champion_wis_tolerance": GATE_CHAMPION_WIS_TOLERANCE,
    "baseline_wis_tolerance": GATE_BASELINE_WIS_TOLERANCE,
}


@dataclass(frozen=True)
class GateConfig:
    """The gate's thresholds; the defaults are the values ``quality_gate.json`` ships with."""

    champion_mase_tolerance: float = GATE_CHAMPION_MASE_TOLERANCE
    coverage_band: tuple[float, float] = GATE_COVERAGE_BAND
    baseline_mase_tolerance: float = GATE_BASELINE_MASE_TOLERANCE
    baseline_winkler_tolerance: float = GATE_BASELINE_WINKLER_TOLERANCE
    champion_wis_tolerance: float = GATE_CHAMPION_WIS_TOLERANCE
    baseline_wis_tolerance: float = GATE_BASELINE_WIS_TOLERANCE


def load_gate_config(path: Path) -> GateConfig:
    """Read ``quality_gate.json``: each threshold is ``{"value": ..., "description": ...}``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rules = data["thresholds"]

        def value(key: str) -> float:
            if key not in rules and key in OPTIONAL_THRESHOLDS:
                return OPTIONAL_THRESHOLDS[key]
            return float(rules[key]["value"])

        config = GateConfig(
            champion_mase_tolerance=value("champion_mase_tolerance"),
            coverage_band=(value("coverage_95_min"), value("coverage_95_max")),
            baseline_mase_tolerance=value("baseline_mase_tolerance"),
            baseline_winkler_tolerance=value("baseline_winkler_tolerance"),
            champion_wis_tolerance=value("champion_wis_tolerance"),
            baseline_wis_tolerance=value("baseline_wis_tolerance"),
        )
    except FileNotFoundError:
        raise UsageError(f"gate config {path} not found (pass --gate-config PATH)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"gate config {path} is invalid: {type(exc).__name__}: {exc}") from None
    lo, hi = config.coverage_band
    if not 0 <= lo <= hi <= 1:
        raise UsageError(f"gate config {path}: coverage band [{lo}, {hi}] must lie within [0, 1]")
    return config


@dataclass(frozen=True)
class GateCheck:
    rule: str
    passed: bool
    value: float
    threshold: str
    message: str


@dataclass(frozen=True)
class GateOutcome:
    series: str
    checks: list[GateCheck]
    notes: list[str]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "passed": self.passed,
            "checks": [c.__dict__ for c in self.checks],
            "notes": self.notes,
        }

    def render(self) -> str:
        head = f"quality gate for {self.series}: {'PASSED' if self.passed else 'FAILED'}"
        lines = [head]
        for c in self.checks:
            lines.append(f"  [{'ok' if c.passed else 'FAIL'}] {c.rule}: {c.message}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def evaluate_gate(
    series: str,
    summary: Mapping[str, Mapping[str, float]],
    champion: str,
    config: GateConfig,
    *,
    baseline_entry: Mapping[str, Any] | None = None,
) -> GateOutcome:
    """Apply the rules to a backtest summary (per-model mean metrics)."""
    checks: list[GateCheck] = []
    notes: list[str] = []
    if BASELINE_MODEL not in summary:
        raise UsageError("the gate needs the naive baseline among the evaluated models")
    champ, naive = summary[champion], summary[BASELINE_MODEL]

    tol = config.champion_mase_tolerance
    limit = naive["mase"] * (1 + tol)
    value = champ["mase"]
    checks.append(
        GateCheck(
            "champion_vs_naive",
            bool(value <= limit + GATE_MASE_SLACK),
            value,
            f"<= {limit:.4f}",
            f"champion {champion} mean MASE {value:.4f}, limit {limit:.4f} "
            f"(naive {naive['mase']:.4f} x (1 + {tol:g}))",
        )
    )

    checks += _champion_wis(champion, champ, naive, config.champion_wis_tolerance, notes)

    lo, hi = config.coverage_band
    cov = champ["coverage_95"]
    inside = math.isfinite(cov) and lo <= cov <= hi
    checks.append(
        GateCheck(
            "champion_coverage_95",
            bool(inside),
            cov,
            f"in [{lo:.2f}, {hi:.2f}]",
            f"champion {champion} 95% coverage {cov:.3f}, band [{lo:.2f}, {hi:.2f}]",
        )
    )

    failed = {m: int(row.get("failed_folds", 0)) for m, row in summary.items()}
    bad = {m: n for m, n in failed.items() if n}
    checks.append(
        GateCheck(
            "all_folds_fit",
            not bad,
            float(sum(bad.values())),
            "0 failed folds",
            "every model forecast every origin"
            if not bad
            else "failed folds: "
            + ", ".join(f"{m} {n}" for m, n in bad.items())
            + " (threshold 0)",
        )
    )

    if baseline_entry is not None:
        btol = config.baseline_mase_tolerance
        base_models: Mapping[str, Mapping[str, float]] = baseline_entry.get("models", {})
        for model, row in summary.items():
            if model not in base_models:
                notes.append(f"{model} has no baseline entry: not compared")
                continue
            base = float(base_models[model]["mase"])
            limit = base * (1 + btol)
            value = row["mase"]
            ok = math.isfinite(value) and value <= limit + GATE_MASE_SLACK
            checks.append(
                GateCheck(
                    f"baseline_{model}",
                    bool(ok),
                    value,
                    f"<= {limit:.4f}",
                    f"{model} mean MASE {value:.4f}, limit {limit:.4f} "
                    f"(baseline {base:.4f} x (1 + {btol:g}))",
                )
            )
        for key, tol in (
            ("wis", config.baseline_wis_tolerance),
            ("winkler_95", config.baseline_winkler_tolerance),
        ):
            checks += _baseline_scores(summary, base_models, key, tol, notes)
        for model in base_models:
            if model not in summary:
                notes.append(f"{model} is in the baseline but was not evaluated")
    return GateOutcome(series, checks, notes)


#: Per score the gate compares: (rule prefix, label in messages).
_SCORES = {"wis": ("baseline_wis", "WIS"), "winkler_95": ("baseline_winkler", "Winkler-95")}


def _within(value: float, limit: float) -> bool:
    return math.isfinite(value) and value <= limit + TIE_TOLERANCE * max(1.0, abs(limit))


def _champion_wis(
    champion: str,
    champ: Mapping[str, float],
    naive: Mapping[str, float],
    tol: float,
    notes: list[str],
) -> list[GateCheck]:
    """``champion_wis_vs_naive``, or a note when the metrics have no WIS."""
    value, ref = float(champ.get("wis", math.nan)), float(naive.get("wis", math.nan))
    if "wis" not in champ or "wis" not in naive:
        notes.append("the metrics have no WIS: champion_wis_vs_naive not checked")
        return []
    limit = ref * (1 + tol)
    return [
        GateCheck(
            "champion_wis_vs_naive",
            _within(value, limit),
            value,
            f"<= {limit:,.2f}",
            f"champion {champion} mean WIS {value:,.2f}, limit {limit:,.2f} "
            f"(naive {ref:,.2f} x (1 + {tol:g}))",
        )
    ]


def _baseline_scores(
    summary: Mapping[str, Mapping[str, float]],
    base_models: Mapping[str, Mapping[str, float]],
    key: str,
    tol: float,
    notes: list[str],
) -> list[GateCheck]:
    """``<prefix>_<model>`` for every model whose baseline entry records ``key``."""
    prefix, label = _SCORES[key]
    checks: list[GateCheck] = []
    for model, row in summary.items():
        if model not in base_models:
            continue
        base = base_models[model].get(key)
        if base is None or not math.isfinite(float(base)):
            if key == "wis":  # a baseline recorded before WIS existed: say so, re-record it
                notes.append(f"{model}'s baseline has no {label}: {prefix}_{model} not checked")
            continue
        limit = float(base) * (1 + tol)
        value = float(row.get(key, math.nan))
        checks.append(
            GateCheck(
                f"{prefix}_{model}",
                _within(value, limit),
                value,
                f"<= {limit:,.2f}",
                f"{model} mean {label} {value:,.2f}, limit {limit:,.2f} "
                f"(baseline {float(base):,.2f} x (1 + {tol:g}))",
            )
        )
    return checks
