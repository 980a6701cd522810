"""The model-quality gate: committed thresholds, a committed baseline, and the rules between them.

Rules (thresholds in ``quality_gate.json``; the built-in defaults and how they relate to champion
selection are in :mod:`pipeline.evaluation.champion`):

1. ``champion_vs_naive``: the champion's mean MASE <= naive's mean MASE x (1 + tolerance).
2. ``champion_coverage_95``: the champion's empirical 95% coverage is inside the band.
3. ``all_folds_fit``: every model produced a forecast at every origin.
4. ``baseline_<model>`` (with a baseline): each model's mean MASE <= its baseline MASE x
   (1 + tolerance).
5. ``baseline_winkler_<model>`` (with a baseline): each model's mean Winkler-95 score <= its
   baseline score x (1 + tolerance): most models share naive's point forecast, so a regression in
   their *intervals* would not show in MASE.

The baseline is only comparable on the same data and protocol; anything else is a usage error
(exit 2), never a silent pass.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import UsageError
from pipeline.evaluation.champion import (
    BASELINE_MODEL,
    GATE_BASELINE_MASE_TOLERANCE,
    GATE_BASELINE_WINKLER_TOLERANCE,
    GATE_CHAMPION_MASE_TOLERANCE,
    GATE_COVERAGE_BAND,
    GATE_MASE_SLACK,
    TIE_TOLERANCE,
)
from pipeline.fileio import atomic_write_json

BASELINE_SCHEMA = 1
#: Metrics recorded per model in the baseline.
BASELINE_METRICS = ("mase", "mae", "coverage_80", "coverage_95", "winkler_95")


@dataclass(frozen=True)
class GateConfig:
    """The gate's thresholds; the defaults are the values ``quality_gate.json`` ships with."""

    champion_mase_tolerance: float = GATE_CHAMPION_MASE_TOLERANCE
    coverage_band: tuple[float, float] = GATE_COVERAGE_BAND
    baseline_mase_tolerance: float = GATE_BASELINE_MASE_TOLERANCE
    baseline_winkler_tolerance: float = GATE_BASELINE_WINKLER_TOLERANCE


def load_gate_config(path: Path) -> GateConfig:
    """Read ``quality_gate.json``: each threshold is ``{"value": ..., "description": ...}``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rules = data["thresholds"]

        def value(key: str) -> float:
            return float(rules[key]["value"])

        config = GateConfig(
            champion_mase_tolerance=value("champion_mase_tolerance"),
            coverage_band=(value("coverage_95_min"), value("coverage_95_max")),
            baseline_mase_tolerance=value("baseline_mase_tolerance"),
            baseline_winkler_tolerance=value("baseline_winkler_tolerance"),
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


def series_fingerprint(y: pd.Series) -> str:
    """sha256 of the timestamps and prices (rounded to 1e-8): identifies the evaluated data."""
    digest = hashlib.sha256()
    digest.update(np.asarray(y.index.asi8, dtype=np.int64).tobytes())
    digest.update(np.round(y.to_numpy(dtype=float), 8).tobytes())
    return digest.hexdigest()


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
        wtol = config.baseline_winkler_tolerance
        for model, row in summary.items():
            base_w = base_models.get(model, {}).get("winkler_95")
            if base_w is None or not math.isfinite(float(base_w)):
                continue
            limit = float(base_w) * (1 + wtol)
            value = row.get("winkler_95", math.nan)
            ok = math.isfinite(value) and value <= limit + TIE_TOLERANCE * max(1.0, abs(limit))
            checks.append(
                GateCheck(
                    f"baseline_winkler_{model}",
                    bool(ok),
                    value,
                    f"<= {limit:,.2f}",
                    f"{model} mean Winkler-95 {value:,.2f}, limit {limit:,.2f} "
                    f"(baseline {float(base_w):,.2f} x (1 + {wtol:g}))",
                )
            )
        for model in base_models:
            if model not in summary:
                notes.append(f"{model} is in the baseline but was not evaluated")
    return GateOutcome(series, checks, notes)


# -- the baseline file ----------------------------------------------------------------------
def read_baseline(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"baseline {path} not found: record one with --write-baseline") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"baseline {path} is unreadable: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("series"), dict):
        raise UsageError(f"baseline {path} has no 'series' mapping")
    return data


def baseline_entry(baseline: Mapping[str, Any], series: str, path: Path) -> dict[str, Any]:
    entry = baseline["series"].get(series)
    if entry is None:
        known = ", ".join(sorted(baseline["series"])) or "none"
        raise UsageError(
            f"baseline {path} has no entry for {series} (has: {known}); "
            "record one with --write-baseline"
        )
    return dict(entry)


def check_comparable(
    entry: Mapping[str, Any], protocol: Mapping[str, Any], fingerprint: str, path: Path
) -> None:
    """Raise a UsageError unless the run used the baseline's data and protocol."""
    if dict(entry.get("protocol", {})) != dict(protocol):
        raise UsageError(
            f"the backtest protocol differs from the baseline's in {path} "
            f"(baseline {entry.get('protocol')}, this run {dict(protocol)}): "
            "drop the protocol flags to reuse the baseline's, or record a new one"
        )
    if entry.get("data_fingerprint") != fingerprint:
        raise UsageError(
            f"the data differs from the data the baseline in {path} was computed on "
            f"({entry.get('data', 'unknown')}): compare on the same file, or record a new baseline"
        )


def write_baseline(
    path: Path,
    series: str,
    *,
    protocol: Mapping[str, Any],
    summary: Mapping[str, Mapping[str, float]],
    fingerprint: str,
    data: str,
    champion: str,
) -> None:
    """Add or replace ``series`` in the baseline file (other series are kept)."""
    current: dict[str, Any] = {"schema_version": BASELINE_SCHEMA, "series": {}}
    if path.exists():
        current = read_baseline(path)
    current["schema_version"] = BASELINE_SCHEMA
    current["series"][series] = {
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": data,
        "data_fingerprint": fingerprint,
        "protocol": dict(protocol),
        "champion": champion,
        "models": {
            m: {k: round(float(row[k]), 6) for k in BASELINE_METRICS if k in row}
            for m, row in summary.items()
        },
    }
    atomic_write_json(path, current)
