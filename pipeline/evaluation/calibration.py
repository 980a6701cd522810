"""Calibration tests of a backtest's intervals: do the 80% and 95% bands hold what they claim?

For each model and level, two p-values (:mod:`pipeline.evaluation.scoring`):

* **Kupiec** (unconditional coverage): is the share of actuals inside the band the nominal one?
* **Christoffersen** (independence): does a miss make the next miss more (or less) likely?

Both assume independent hits under a correct model, which the points of one multi-step path are
not (they share every shock up to their step, so their misses cluster by design). They are
therefore applied to two samples of one point per origin:

* ``step_1``: the one-step-ahead forecast of every origin. Origins are at least one step apart,
  so no two of these forecasts cover the same point.
* ``non_overlapping``: the last horizon step of origins spaced at least the horizon apart, so
  that no two forecast windows share a point. When the protocol's origins are closer than that
  (e.g. every 10 days with a 30-day horizon), a subset is kept: the first origin, then each next
  origin at least a horizon after the last one kept (:func:`non_overlapping`), and the report
  says so.

A p-value below 0.05 rejects "the band is calibrated" (Kupiec) or "misses are independent"
(Christoffersen) at 5%. With a dozen origins the tests have little power: a large p-value is an
absence of evidence, not a proof of calibration. ``nan`` means nothing to test (no points, or,
for Christoffersen, no miss or only misses).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluation.scoring import christoffersen_independence, kupiec_pof
from pipeline.forecasters.base import DEFAULT_LEVELS

#: The two samples, in report order.
SAMPLES = ("step_1", "non_overlapping")


def non_overlapping(origins: Sequence[pd.Timestamp], span: pd.Timedelta) -> list[pd.Timestamp]:
    """The first origin, then each next one at least ``span`` (horizon x step) after the last
    kept: forecast windows of the kept origins share no point."""
    kept: list[pd.Timestamp] = []
    for origin in sorted(origins):
        if not kept or origin - kept[-1] >= span:
            kept.append(origin)
    return kept


def _tests(rows: pd.DataFrame, levels: Sequence[int]) -> dict[str, float]:
    """n, coverage, Kupiec and Christoffersen p-values of rows ordered in time."""
    y = rows["actual"].to_numpy(float)
    out: dict[str, float] = {"n": float(len(rows))}
    for level in sorted(levels):
        hits = (y >= rows[f"lower_{level}"].to_numpy(float)) & (
            y <= rows[f"upper_{level}"].to_numpy(float)
        )
        out[f"coverage_{level}"] = float(hits.mean()) if hits.size else math.nan
        out[f"kupiec_{level}"] = kupiec_pof(hits, level)
        out[f"christoffersen_{level}"] = christoffersen_independence(hits)
    return out


def calibration_tests(
    folds: pd.DataFrame,
    origins: Sequence[pd.Timestamp],
    horizon: int,
    step: pd.Timedelta,
    levels: Sequence[int] = DEFAULT_LEVELS,
) -> dict[str, Any]:
    """Kupiec and Christoffersen p-values per model on the two samples (module docstring).

    ``folds`` are a backtest's per-step rows (``origin, model, step, actual, lower_L,
    upper_L``), ``origins`` the protocol's origins, ``step`` the length of one series step.
    Returns ``{"samples": {name: description}, "models": {model: {sample: {n, coverage_L,
    kupiec_L, christoffersen_L}}}}``.
    """
    kept = non_overlapping(origins, horizon * step)
    overlap = len(kept) < len(origins)
    samples = {
        "step_1": {"step": 1, "origins": len(origins), "overlapping_origins": False},
        "non_overlapping": {
            "step": horizon,
            "origins": len(kept),
            "of_origins": len(origins),
            "overlapping_origins": overlap,
        },
    }
    models: dict[str, dict[str, dict[str, float]]] = {}
    if folds.empty:
        return {"samples": samples, "models": models}
    keep = list(kept)
    for model, part in folds.groupby("model", sort=False):
        part = part.sort_values(["origin", "step"])
        first = part[part["step"] == 1]
        last = part[(part["step"] == horizon) & part["origin"].isin(keep)]
        models[str(model)] = {
            "step_1": _tests(first, levels),
            "non_overlapping": _tests(last, levels),
        }
    return {"samples": samples, "models": models}


def describe_samples(calibration: Mapping[str, Any]) -> str:
    """One sentence on what was tested, saying when the protocol's origins overlap."""
    one, last = calibration["samples"]["step_1"], calibration["samples"]["non_overlapping"]
    text = (
        f"Step 1: the one-step-ahead forecast of each of the {one['origins']} origins. "
        f"Step {last['step']}: the last horizon step of "
    )
    if last["overlapping_origins"]:
        text += (
            f"{last['origins']} of the {last['of_origins']} origins — the protocol's origins "
            f"are closer together than the {last['step']}-step horizon, so their forecast "
            "windows overlap and only a subset spaced at least a horizon apart is tested."
        )
    else:
        text += f"all {last['origins']} origins (spaced at least a horizon apart: no overlap)."
    return text


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def calibration_table(
    calibration: Mapping[str, Any],
    levels: Sequence[int] = DEFAULT_LEVELS,
    models: Sequence[str] | None = None,
) -> str:
    """Markdown: per model and sample, n, coverage and the p-values at each level."""
    header = ["Model", "Step", "n"]
    for level in sorted(levels):
        header += [f"Cov. {level}", f"Kupiec {level} p", f"Christoffersen {level} p"]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|" + "---:|" * (len(header) - 2)]
    results = calibration["models"]
    for model in models if models is not None else list(results):
        if model not in results:
            continue
        for sample in SAMPLES:
            row = results[model][sample]
            cov_n = int(row["n"])
            cells = [model, str(calibration["samples"][sample]["step"]), str(cov_n)]
            for level in sorted(levels):
                cov = row[f"coverage_{level}"]
                cells += [
                    "–" if not math.isfinite(cov) else f"{cov:.1%}",
                    _p(row[f"kupiec_{level}"]),
                    _p(row[f"christoffersen_{level}"]),
                ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def json_safe(calibration: Mapping[str, Any]) -> dict[str, Any]:
    """The same mapping with ``nan`` p-values as ``None`` (JSON has no NaN)."""

    def clean(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, float | np.floating) and not math.isfinite(value):
            return None
        return value

    result: dict[str, Any] = clean(calibration)
    return result


__all__ = [
    "SAMPLES",
    "calibration_table",
    "calibration_tests",
    "describe_samples",
    "json_safe",
    "non_overlapping",
]
