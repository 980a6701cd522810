"""The Markdown tables of the comparison report and of ``compare_models.py``'s output.

Scores in price units (WIS, pinball) are shown with their ratio to naive's *on the same origins*
(:func:`pipeline.evaluation.backtest.paired_ratio`) in parentheses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from pipeline.evaluation.backtest import BacktestResult, paired_ratio
from pipeline.evaluation.metrics import PINBALL_KEYS

#: Columns of the printed / Markdown table: (metric key, header, format).
TABLE_COLUMNS: list[tuple[str, str, str]] = [
    ("mase", "MASE", "{:.3f}"),
    ("mae", "MAE", "{:,.2f}"),
    ("rmse", "RMSE", "{:,.2f}"),
    ("mape", "MAPE %", "{:.2f}"),
    ("smape", "sMAPE %", "{:.2f}"),
    ("directional_accuracy", "Dir. acc.", "{:.1%}"),
    ("coverage_80", "Cov. 80", "{:.1%}"),
    ("coverage_95", "Cov. 95", "{:.1%}"),
    ("width_95", "Width 95", "{:,.0f}"),
    ("winkler_95", "Winkler 95", "{:,.0f}"),
    ("wis", "WIS", "num"),
    ("wis_ratio", "WIS / naive", "{:.3f}"),
    ("fit_seconds", "Fit s", "{:.2f}"),
    ("n_folds", "Folds", "{:.0f}"),
]


def _fmt(value: float, pattern: str) -> str:
    """``value`` in ``pattern``; ``num``: thousands separators from 100 up, else 4 digits."""
    if not math.isfinite(value):
        return "–"
    if pattern == "num":
        pattern = "{:,.0f}" if abs(value) >= 100 else "{:.4g}"
    return pattern.format(value)


def _with_ratio(value: float, ratio: float) -> str:
    """``33,935 (0.879)``: an absolute score and its ratio to naive's."""
    return f"{_fmt(value, 'num')} ({_fmt(ratio, '{:.3f}')})"


def metrics_table(summary: Mapping[str, Mapping[str, float]], champion: str | None = None) -> str:
    """A Markdown table, one row per model sorted by MASE; the champion is marked with *."""
    header = "| Model | " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(TABLE_COLUMNS)
    lines = [header, rule]

    def key(item: tuple[str, Mapping[str, float]]) -> float:
        v = float(item[1].get("mase", math.nan))
        return v if math.isfinite(v) else math.inf

    for name, row in sorted(summary.items(), key=key):
        label = f"**{name}** *" if name == champion else name
        cells = [_fmt(float(row.get(k, math.nan)), f) for k, _, f in TABLE_COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def horizon_table(by_h: pd.DataFrame, metric: str = "mase", steps: Sequence[int] = ()) -> str:
    """Markdown: ``metric`` by horizon step (rows) and model (columns)."""
    pivot = by_h.pivot(index="step", columns="model", values=metric)
    if steps:
        pivot = pivot.loc[[s for s in steps if s in pivot.index]]
    lines = [
        "| Step | " + " | ".join(pivot.columns) + " |",
        "|---:|" + "---:|" * len(pivot.columns),
    ]
    for step, row in pivot.iterrows():
        lines.append(f"| {step} | " + " | ".join(_fmt(float(v), "{:.3f}") for v in row) + " |")
    return "\n".join(lines)


def proper_scores_table(result: BacktestResult, models: Sequence[str]) -> str:
    """Markdown: mean WIS and pinball loss per quantile, each with its ratio to naive's on the
    same origins in parentheses."""
    summary = result.summary()
    fm = result.fold_metrics
    keys = ["wis", *PINBALL_KEYS]
    heads = [
        "WIS (/ naive)",
        *(f"Pinball {k.removeprefix('pinball_')}% (/ naive)" for k in keys[1:]),
    ]
    lines = ["| Model | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for name in models:
        row = summary[name]
        cells = [_with_ratio(float(row.get(k, math.nan)), paired_ratio(fm, name, k)) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wis_horizon_table(by_h: pd.DataFrame, ratios: pd.DataFrame, steps: Sequence[int]) -> str:
    """Markdown: mean WIS by horizon step (rows) and model (columns), ratio to naive's on the
    same points in parentheses."""
    pivot = by_h.pivot(index="step", columns="model", values="wis")
    pivot = pivot.loc[[s for s in steps if s in pivot.index]]
    lines = [
        "| Step | " + " | ".join(pivot.columns) + " |",
        "|---:|" + "---:|" * len(pivot.columns),
    ]
    for step, row in pivot.iterrows():
        cells = []
        for model, value in row.items():
            ratio = math.nan
            if model in ratios and step in ratios.index:
                ratio = float(ratios.loc[step, model])
            cells.append(_with_ratio(float(value), ratio))
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "TABLE_COLUMNS",
    "horizon_table",
    "metrics_table",
    "proper_scores_table",
    "wis_horizon_table",
]
