"""The comparison report: ``comparison.json``, ``comparison.md``, ``folds.csv`` and PNG plots.

Each run gets a folder of its own, ``reports/<series>/<UTC time to the microsecond>Z-<random>/``
(:func:`report_dir`): names sort by time and two runs never share one, even within the same
microsecond. A report is written whole into a hidden temporary sibling (``.<name>.tmp``) and
renamed into place, so a reader never sees half a report and a failed or interrupted run
leaves none behind. The plots are drawn by :mod:`pipeline.evaluation.plots`, the tables by
:mod:`pipeline.evaluation.tables`.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.evaluation.backtest import BacktestResult, horizon_ratio
from pipeline.evaluation.calibration import calibration_table, describe_samples, json_safe
from pipeline.evaluation.metrics import METRIC_DEFINITIONS
from pipeline.evaluation.tables import (
    horizon_table,
    metrics_table,
    proper_scores_table,
    wis_horizon_table,
)
from pipeline.fileio import atomic_write_csv, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)


def report_dir(reports_root: Path, series: str, now: datetime | None = None) -> Path:
    """A fresh folder name, ``reports/<series>/20261121T101500123456Z-3fa2c1/`` (not created).

    The UTC time (to the microsecond) keeps folders in creation order when sorted by name; the
    random suffix keeps two runs apart even when their clocks read the same.
    """
    now = now or datetime.now(UTC)
    return reports_root / series / f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


def _json_float(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextmanager
def _new_folder(out_dir: Path) -> Iterator[Path]:
    """A hidden temporary sibling of ``out_dir``, renamed to ``out_dir`` when the block succeeds
    and removed when it fails, so ``out_dir`` appears complete or not at all."""
    if out_dir.exists():
        raise FileExistsError(f"report folder {out_dir} already exists: use report_dir()")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp"
    tmp.mkdir()
    try:
        yield tmp
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _utc_text(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")


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
    """Write every report file into the new folder ``out_dir``; return name -> path.

    ``out_dir`` must not exist yet (:func:`report_dir` gives a fresh one). The files are written
    into a temporary sibling that is renamed to ``out_dir`` once complete: on any error (a plot
    that fails, an interrupt) it is removed and ``out_dir`` never appears.
    """
    from pipeline.evaluation.plots import plot_forecasts, plot_mase_by_horizon

    summary = result.summary()
    by_h = result.by_horizon()
    ratios = horizon_ratio(result.folds, "wis", result.protocol.levels)
    calibration = result.calibration()
    names = {"folds": "folds.csv", "fold_metrics": "fold_metrics.csv", "json": "comparison.json"}
    if plots:
        names |= {"forecasts_png": "forecasts.png", "mase_png": "mase_by_horizon.png"}
    names["md"] = "comparison.md"
    folds = result.folds.copy()
    for col in ("origin", "ds"):
        if col in folds:
            folds[col] = _utc_text(folds[col])
    fm = result.fold_metrics.copy()
    for col in ("origin", "train_start"):
        fm[col] = _utc_text(fm[col])
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
                for k in ("mase", "mae", "coverage_80", "coverage_95", "wis")
            }
            for m, part in by_h.groupby("model")
        },
        "wis_ratio_by_horizon": {
            str(m): [_json_float(float(v)) for v in col] for m, col in ratios.items()
        },
        "calibration": json_safe(calibration),
        "champion": champion,
        "champion_reason": reason,
        "coverage_band": list(coverage_band),
        "mase_tolerance": mase_tolerance,
        "failures": result.failures,
        "elapsed_seconds": round(result.elapsed_seconds, 2),
        "gate": dict(gate) if gate is not None else None,
        "metric_definitions": METRIC_DEFINITIONS,
    }
    markdown = _markdown(
        result, summary, by_h, champion, reason, data_source, gate, plots, ratios, calibration
    )
    with _new_folder(out_dir) as tmp:
        atomic_write_csv(tmp / names["folds"], folds)
        atomic_write_csv(tmp / names["fold_metrics"], fm)
        atomic_write_json(tmp / names["json"], payload)
        if plots:
            plot_forecasts(result, tmp / names["forecasts_png"])
            plot_mase_by_horizon(by_h, tmp / names["mase_png"], result.series)
        atomic_write_text(tmp / names["md"], markdown)
    logger.info("report written to %s", out_dir, extra={"series": result.series})
    return {key: out_dir / name for key, name in names.items()}


def _markdown(
    result: BacktestResult,
    summary: Mapping[str, Mapping[str, float]],
    by_h: pd.DataFrame,
    champion: str,
    reason: str,
    data_source: str,
    gate: Mapping[str, Any] | None,
    plots: bool,
    ratios: pd.DataFrame,
    calibration: Mapping[str, Any],
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
        "## Proper scores",
        "",
        "WIS (weighted interval score over the median and the 80/95% intervals, the quantile "
        "form of the CRPS) and the pinball loss of each quantile, mean over origins, price "
        "units; in parentheses the ratio to naive's on the same origins (< 1 is better).",
        "",
        proper_scores_table(result, result.models),
        "",
        "## WIS by horizon step",
        "",
        wis_horizon_table(by_h, ratios, steps),
        "",
        "## Calibration tests",
        "",
        "p-values of Kupiec's test that the interval's coverage is the nominal one and of "
        "Christoffersen's test that a miss does not depend on the previous miss: below 0.05 "
        "rejects at 5%; – means nothing to test (no miss, or only misses). "
        + describe_samples(calibration),
        "",
        calibration_table(calibration, result.protocol.levels, result.models),
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
    if plots:
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


__all__ = ["METRIC_DEFINITIONS", "report_dir", "write_report"]
