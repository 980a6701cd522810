"""The comparison report: ``comparison.json``, ``comparison.md``, ``folds.csv`` and PNG plots."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.evaluation.backtest import BacktestResult
from pipeline.evaluation.metrics import METRIC_KEYS
from pipeline.fileio import atomic_open, atomic_write_csv, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

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
    ("fit_seconds", "Fit s", "{:.2f}"),
    ("n_folds", "Folds", "{:.0f}"),
]


def report_dir(reports_root: Path, series: str, now: datetime | None = None) -> Path:
    """``reports/<series>/<UTC timestamp>/`` (not created)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return reports_root / series / stamp


def _fmt(value: float, pattern: str) -> str:
    return "–" if not math.isfinite(value) else pattern.format(value)


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


def _json_float(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(
    result: BacktestResult,
    out_dir: Path,
    *,
    champion: str,
    reason: str,
    data_source: str,
    coverage_band: tuple[float, float],
    gate: Mapping[str, Any] | None = None,
    plots: bool = True,
    mase_tolerance: float = 0.0,
) -> dict[str, Path]:
    """Write every report file into ``out_dir``; return name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = result.summary()
    by_h = result.by_horizon()
    files: dict[str, Path] = {}

    folds = result.folds.copy()
    for col in ("origin", "ds"):
        if col in folds:
            folds[col] = pd.to_datetime(folds[col], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    files["folds"] = out_dir / "folds.csv"
    atomic_write_csv(files["folds"], folds)

    fm = result.fold_metrics.copy()
    for col in ("origin", "train_start"):
        fm[col] = pd.to_datetime(fm[col], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    files["fold_metrics"] = out_dir / "fold_metrics.csv"
    atomic_write_csv(files["fold_metrics"], fm)

    payload = {
        "series": result.series,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_source": data_source,
        "protocol": result.protocol.to_dict(),
        "origins": [o.isoformat() for o in result.origins],
        "models": result.models,
        "metrics": {m: {k: _json_float(v) for k, v in row.items()} for m, row in summary.items()},
        "metrics_by_horizon": {
            m: {
                k: [_json_float(float(v)) for v in part[k]]
                for k in ("mase", "mae", "coverage_80", "coverage_95")
            }
            for m, part in by_h.groupby("model")
        },
        "champion": champion,
        "champion_reason": reason,
        "coverage_band": list(coverage_band),
        "mase_tolerance": mase_tolerance,
        "failures": result.failures,
        "elapsed_seconds": round(result.elapsed_seconds, 2),
        "gate": dict(gate) if gate is not None else None,
        "metric_definitions": METRIC_DEFINITIONS,
    }
    files["json"] = out_dir / "comparison.json"
    atomic_write_json(files["json"], payload)

    if plots:
        files["forecasts_png"] = out_dir / "forecasts.png"
        plot_forecasts(result, files["forecasts_png"])
        files["mase_png"] = out_dir / "mase_by_horizon.png"
        plot_mase_by_horizon(by_h, files["mase_png"], result.series)

    files["md"] = out_dir / "comparison.md"
    atomic_write_text(
        files["md"], _markdown(result, summary, by_h, champion, reason, data_source, gate, files)
    )
    return files


METRIC_DEFINITIONS: dict[str, str] = {
    "mae": "mean |actual - forecast|, price units",
    "rmse": "sqrt(mean (actual - forecast)^2), per fold, averaged over folds",
    "mape": "100 x mean |error| / |actual|",
    "smape": "100 x mean 2|error| / (|actual| + |forecast|)",
    "mase": "MAE / in-sample one-step naive MAE of the fold's training window",
    "directional_accuracy": "share of steps where the forecast and the actual move the same way "
    "from the last training price",
    "coverage_L": "share of actuals inside the L% interval (target L%)",
    "width_L": "mean width of the L% interval, price units",
    "winkler_L": "interval score: width + (2/alpha) x distance outside the interval, "
    "alpha = 1 - L/100",
    "fit_seconds": "wall time of one fit (mean over the fits)",
}


def _markdown(
    result: BacktestResult,
    summary: Mapping[str, Mapping[str, float]],
    by_h: pd.DataFrame,
    champion: str,
    reason: str,
    data_source: str,
    gate: Mapping[str, Any] | None,
    files: Mapping[str, Path],
) -> str:
    p = result.protocol
    h = p.horizon
    steps = sorted({1, min(h, 7), min(h, 12), h} | ({24} if h >= 24 else set()))
    window = f"sliding, last {p.train_window} points" if p.train_window else "expanding"
    out = [
        f"# Model comparison: {result.series}",
        "",
        f"- Data: {data_source}",
        f"- Protocol: {len(result.origins)} origins from {result.origins[0]:%Y-%m-%d %H:%M} to "
        f"{result.origins[-1]:%Y-%m-%d %H:%M} UTC every {p.to_dict()['step']}, horizon {h} "
        f"steps ({p.freq}), training window {window}, refit every {p.refit_every} origin(s); "
        "each fit sees only data strictly before its origin.",
        f"- **Champion: {champion}** — {reason}",
        "",
        "## Mean metrics over origins",
        "",
        metrics_table(summary, champion),
        "",
        "## MASE by horizon step",
        "",
        horizon_table(by_h, "mase", steps),
        "",
        "## 95% coverage by horizon step",
        "",
        horizon_table(by_h, "coverage_95", steps),
        "",
    ]
    if result.failures:
        out += ["## Failed folds", ""]
        for model, errors in result.failures.items():
            out += [f"- {model}: {e}" for e in errors[:10]]
        out.append("")
    if gate is not None:
        out += ["## Quality gate", "", f"**{'PASSED' if gate['passed'] else 'FAILED'}**", ""]
        out += [
            f"- {'ok' if c['passed'] else 'FAIL'} `{c['rule']}`: {c['message']}"
            for c in gate["checks"]
        ]
        out.append("")
    if "forecasts_png" in files:
        out += [
            "## Plots",
            "",
            "![forecasts](forecasts.png)",
            "",
            "![MASE](mase_by_horizon.png)",
            "",
        ]
    out += [
        "## Metric definitions",
        "",
        *[f"- `{k}`: {v}" for k, v in METRIC_DEFINITIONS.items()],
        "",
        "Per-step forecasts are in `folds.csv` (with each fold's `scale` and `last_price`), "
        "per-fold metrics in `fold_metrics.csv`.",
        "",
    ]
    return "\n".join(out)


# -- plots ----------------------------------------------------------------------------------
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
            ax.fill_between(
                fold["ds"],
                fold["lower_95"],
                fold["upper_95"],
                color="tab:blue",
                alpha=0.15,
                linewidth=0,
                label="95% interval",
            )
            ax.fill_between(
                fold["ds"],
                fold["lower_80"],
                fold["upper_80"],
                color="tab:blue",
                alpha=0.3,
                linewidth=0,
                label="80% interval",
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
                ax.set_ylabel(
                    f"{model}\nMASE {s['mase']:.2f}, cov95 {s['coverage_95']:.0%}", fontsize=9
                )
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


__all__ = [
    "METRIC_DEFINITIONS",
    "horizon_table",
    "metrics_table",
    "plot_forecasts",
    "plot_mase_by_horizon",
    "report_dir",
    "write_report",
    "METRIC_KEYS",
]
