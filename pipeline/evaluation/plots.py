"""The report's PNG plots: forecasts at the last origins, and MASE by horizon step.

Matplotlib runs headless (the ``Agg`` backend) and each figure is written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.evaluation.backtest import BacktestResult
from pipeline.fileio import atomic_open


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_forecasts(result: BacktestResult, path: Path, last_origins: int = 3) -> None:
    """A grid (rows: models, columns: the last origins): actuals, forecast, 80/95% bands."""
    plt = _pyplot()
    folds = result.folds
    models = [m for m in result.models if m in set(folds.get("model", []))]
    if not models:
        return
    origins = sorted(folds["origin"].unique())[-last_origins:]
    summary = result.summary()
    fig, axes = plt.subplots(
        len(models),
        len(origins),
        figsize=(4.6 * len(origins), 2.5 * len(models) + 0.8),
        squeeze=False,
        sharex="col",
        sharey="col",
    )
    for row, model in enumerate(models):
        for col, origin in enumerate(origins):
            ax = axes[row][col]
            fold = folds[(folds["model"] == model) & (folds["origin"] == origin)].sort_values("ds")
            if fold.empty:
                ax.text(0.5, 0.5, "no forecast (failed)", ha="center", transform=ax.transAxes)
                continue
            for level, alpha in ((95, 0.15), (80, 0.3)):  # the wider band underneath
                ax.fill_between(
                    fold["ds"],
                    fold[f"lower_{level}"],
                    fold[f"upper_{level}"],
                    color="tab:blue",
                    alpha=alpha,
                    linewidth=0,
                    label=f"{level}% interval",
                )
            ax.plot(fold["ds"], fold["mean"], color="tab:blue", linewidth=1.6, label="forecast")
            ax.plot(fold["ds"], fold["actual"], color="black", linewidth=1.2, label="actual")
            ax.axhline(
                fold["last_price"].iloc[0],
                color="grey",
                linestyle=":",
                linewidth=1,
                label="last price before origin",
            )
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"origin {pd.Timestamp(origin):%Y-%m-%d %H:%M} UTC", fontsize=10)
            if col == 0:
                s = summary[model]
                wis = float(s.get("wis_ratio", math.nan))
                label = f"{model}\nMASE {s['mase']:.2f}, cov95 {s['coverage_95']:.0%}"
                if math.isfinite(wis):
                    label += f"\nWIS {wis:.3f}x naive"
                ax.set_ylabel(label, fontsize=9)
            if row == len(models) - 1:
                ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    height = 2.5 * len(models) + 1.0
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle(
        f"{result.series}: forecasts at the last {len(origins)} origins (price)",
        y=1 - 0.12 / height,
    )
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=5,
        fontsize=9,
        bbox_to_anchor=(0.5, 1 - 0.42 / height),
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.8 / height))
    _save(fig, path, plt)


def plot_mase_by_horizon(by_h: pd.DataFrame, path: Path, series: str) -> None:
    """MASE (mean over origins) against the horizon step, one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for model, part in by_h.groupby("model", sort=False):
        ax.plot(part["step"], part["mase"], marker="o", markersize=3, label=str(model))
    ax.axhline(
        1.0, color="grey", linestyle="--", linewidth=1, label="MASE 1 (in-sample naive one-step)"
    )
    ax.set_xlabel("horizon step")
    ax.set_ylabel("MASE (mean over origins)")
    ax.set_title(f"{series}: error by horizon (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, plt)


def _save(fig: Any, path: Path, plt: Any) -> None:
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


__all__ = ["plot_forecasts", "plot_mase_by_horizon"]
