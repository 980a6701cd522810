"""Forecast-quality report (``make quality-report``): every registered model on the shared data.

    .venv/bin/python bench/quality_report.py [--data-dir ../shared/data] [--models a,b]
        [--origins 60] [--n-jobs 2] [--out reports/quality]

Protocol (fixed, so runs are comparable): rolling origin, ``--origins`` (60) origins ending at the
latest one with a full horizon of actuals; daily series: origins every 10 days, 30-day horizon,
sliding window of the last 1,095 points; hourly: origins every 24 hours, 24-hour horizon, sliding
window of the last 2,160 points; one fit per origin, on data strictly before it. The calibrated
models (``conformal_*``, ``aci_*``) calibrate the horizon the backtest scores. The champion is
chosen by :func:`pipeline.evaluation.champion.decide_comparison` with the per-origin evidence
and the series' frequency (the rule compare_models and training use) and checked against the
quality targets. Writes ``quality.md`` and ``quality.json`` (and each series' ``folds.csv``) to
``--out``, rewrites the documentation page ``docs/results/forecast-quality.md``
(``--no-docs-page`` to leave it alone) and prints the
Markdown. Not part of CI (``make gate`` is).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import get_settings  # noqa: E402
from pipeline.evaluation.backtest import BacktestResult, paired_ratio, run_backtest  # noqa: E402
from pipeline.evaluation.calibration import (  # noqa: E402
    calibration_table,
    describe_samples,
    json_safe,
)
from pipeline.evaluation.champion import decide_comparison, ensure_naive  # noqa: E402
from pipeline.evaluation.compare import load_csv_series  # noqa: E402
from pipeline.evaluation.evidence import Evidence  # noqa: E402
from pipeline.evaluation.metrics import PINBALL_KEYS  # noqa: E402
from pipeline.evaluation.protocol import default_protocol  # noqa: E402
from pipeline.fileio import atomic_write_csv, atomic_write_json, atomic_write_text  # noqa: E402
from pipeline.forecasters import REGISTRY, parse_models  # noqa: E402
from pipeline.logs import configure_logging  # noqa: E402

logger = logging.getLogger("quality_report")


@dataclass(frozen=True)
class Run:
    label: str
    file: str
    freq: str
    horizon: int
    step: str
    window: int
    steps: tuple[int, ...]  # horizon steps shown in the MASE-by-horizon columns


RUNS = (
    Run("BTC/USD daily", "bitstamp_btcusd_1d_2014-2021.csv", "1d", 30, "10D", 1095, (1, 7, 30)),
    Run("BTC/USD hourly", "bitstamp_btcusd_1h_2018-2021.csv", "1h", 24, "24h", 2160, (1, 12, 24)),
    Run("ETH/USD daily", "coingecko_eth-usd_1d_2015-2021.csv", "1d", 30, "10D", 1095, (1, 7, 30)),
)

#: The quality targets for the champion: (name, metric, low, high); ratios are to naive.
TARGETS = (
    ("mean MASE <= naive's", "mase_ratio", -math.inf, 1.0),
    ("95% coverage in [94%, 96%]", "coverage_95", 0.94, 0.96),
    ("80% coverage in [78%, 82%]", "coverage_80", 0.78, 0.82),
    ("Winkler-95 better than naive's", "winkler_95_ratio", -math.inf, 1.0 - 1e-9),
)


def _ratio(row: Mapping[str, float], naive: Mapping[str, float], key: str) -> float:
    ref = float(naive.get(key, math.nan))
    return float(row.get(key, math.nan)) / ref if ref else math.nan


def series_table(result: BacktestResult, steps: Sequence[int]) -> list[dict[str, float | str]]:
    """One row per model: the figures of the report (ratios are to naive)."""
    summary = result.summary()
    naive = summary["naive"]
    by_h = result.by_horizon().set_index(["model", "step"])
    rows: list[dict[str, float | str]] = []
    for model in result.models:
        s = summary[model]
        row: dict[str, float | str] = {"model": model, "mase": s["mase"]}
        row["mase_ratio"] = _ratio(s, naive, "mase")
        for step in steps:
            at = (model, step)
            row[f"mase_h{step}"] = float(by_h.loc[at, "mase"]) if at in by_h.index else math.nan
        row["coverage_80"], row["coverage_95"] = s["coverage_80"], s["coverage_95"]
        for key in ("width_95", "winkler_80", "winkler_95"):
            row[f"{key}_ratio"] = _ratio(s, naive, key)
        row["wis"], row["wis_ratio"] = s["wis"], s["wis_ratio"]  # ratio on the same origins
        for key in PINBALL_KEYS:
            row[f"{key}_ratio"] = paired_ratio(result.fold_metrics, model, key)
        row["fit_seconds"], row["failed_folds"] = s["fit_seconds"], s["failed_folds"]
        rows.append(row)
    return rows


def _f(value: float | str, pattern: str) -> str:
    if isinstance(value, str):
        return value
    return "–" if not math.isfinite(value) else pattern.format(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], steps: Sequence[int], champion: str) -> str:
    cols = [
        ("mase", "MASE", "{:.3f}"),
        ("mase_ratio", "MASE / naive", "{:.3f}"),
        *[(f"mase_h{s}", f"MASE h{s}", "{:.2f}") for s in steps],
        ("coverage_80", "Cov. 80", "{:.1%}"),
        ("coverage_95", "Cov. 95", "{:.1%}"),
        ("width_95_ratio", "Width 95 / naive", "{:.3f}"),
        ("winkler_80_ratio", "Winkler 80 / naive", "{:.3f}"),
        ("winkler_95_ratio", "Winkler 95 / naive", "{:.3f}"),
        ("wis", "WIS", "{:,.1f}"),
        ("wis_ratio", "WIS / naive", "{:.3f}"),
        ("fit_seconds", "Fit s", "{:.3f}"),
    ]
    lines = [
        "| Model | " + " | ".join(h for _, h, _ in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for row in rows:
        name = str(row["model"])
        label = f"**{name}** ★" if name == champion else name
        if row["failed_folds"]:
            label += f" ({int(row['failed_folds'])} failed)"
        lines.append(f"| {label} | " + " | ".join(_f(row[k], p) for k, _, p in cols) + " |")
    return "\n".join(lines)


def check_targets(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, key, lo, hi in TARGETS:
        value = float(row[key])
        out.append({"target": name, "value": value, "holds": bool(lo <= value <= hi)})
    return out


def _target_line(checks: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for c in checks:
        value = c["value"]
        shown = f"{value:.1%}" if "coverage" in c["target"] else f"{value:.3f} x naive"
        parts.append(f"{c['target']}: {shown} {'✅' if c['holds'] else '❌'}")
    return "; ".join(parts)


def _jsonable(value: Any) -> Any:
    """Plain JSON: NaN/inf become null, anything else unknown a string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--models", help="comma list (default: every registered model)")
    p.add_argument("--origins", type=int, default=60)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="default: REPORTS_DIR/quality")
    p.add_argument("--only", help="run only series whose file name contains this")
    p.add_argument("--docs-page", type=Path, default=DOCS_PAGE, help=f"default: {DOCS_PAGE}")
    p.add_argument("--no-docs-page", action="store_true", help="leave the docs page alone")
    return p


#: The documentation page the report rewrites (``docs/results/forecast-quality.md``).
DOCS_PAGE = ROOT / "docs" / "results" / "forecast-quality.md"
DOCS_HEADER = (
    "# Forecast quality\n\n"
    "`make quality-report` regenerates this page. Protocol and models: "
    "[the quality report](../evaluation.md#quality-report); what the figures mean: "
    "[Results](index.md).\n\n"
)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging("WARNING", settings.log_format)
    models = ensure_naive(parse_models(args.models) if args.models else list(REGISTRY))
    out_dir = args.out or settings.reports_dir / "quality"
    runs = [r for r in RUNS if not args.only or args.only in r.file]
    if not runs:
        sys.stderr.write(f"error: no series matches --only {args.only!r}\n")
        return 2
    started = time.perf_counter()
    given = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python", "bench/quality_report.py", *given])
    md = [  # the body; each output puts its own title on top
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `{command}` "
        f"({len(models)} models, {args.origins} origins per series, n_jobs={args.n_jobs}).",
        "Ratios are to naive (< 1 is better; WIS / naive on the same origins); MASE hN = MASE "
        "at horizon step N; WIS = weighted interval score over the median and the 80/95% "
        "intervals (price units); ★ = champion by the selection rule.",
        "",
    ]
    report: dict[str, Any] = {"models": models, "origins": args.origins, "series": {}}
    for run in runs:
        path = args.data_dir / run.file
        y, source = load_csv_series(path, run.freq, settings)
        protocol = default_protocol(
            run.freq,
            y.index,
            horizon=run.horizon,
            step=run.step,
            n_origins=args.origins,
            train_window=run.window,
        )
        params = {m: {"horizon": run.horizon} for m in models if m.startswith(("conformal", "aci"))}
        result = run_backtest(
            y, models, protocol, series=run.label, model_params=params, n_jobs=args.n_jobs
        )
        summary = result.summary()
        decision = decide_comparison(  # the rule compare_models and training use
            run.label, summary, evidence=Evidence.from_backtest(result), freq=run.freq
        )
        champion, reason = decision.champion, decision.reason
        rows = series_table(result, run.steps)
        calibration = result.calibration()
        checks = check_targets(next(r for r in rows if r["model"] == champion))
        first, last = result.origins[0], result.origins[-1]
        md += [
            f"## {run.label} — `{run.file}`",
            "",
            f"{len(result.origins)} origins from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} "
            f"UTC every {run.step}, horizon {run.horizon} steps, sliding window of "
            f"{run.window:,} points; backtest wall time {result.elapsed_seconds:.0f} s.",
            "",
            markdown_table(rows, run.steps, champion),
            "",
            f"**Champion: {champion}** — {reason}",
            "",
            f"Quality targets for {champion}: {_target_line(checks)}",
            "",
            "Calibration tests (p-values; below 0.05 rejects at 5%: Kupiec — the coverage is "
            "the nominal one; Christoffersen — a miss does not depend on the previous one). "
            + describe_samples(calibration),
            "",
            calibration_table(calibration, protocol.levels, result.models),
            "",
        ]
        report["series"][run.label] = {
            "data": source,
            "protocol": protocol.to_dict(),
            "origins": [o.isoformat() for o in result.origins],
            "rows": rows,
            "champion": champion,
            "reason": reason,
            "targets": checks,
            "calibration": json_safe(calibration),
            "failures": result.failures,
            "elapsed_seconds": round(result.elapsed_seconds, 1),
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        slug = run.file.removesuffix(".csv")
        atomic_write_csv(out_dir / f"{slug}-folds.csv", result.folds)
    wall = time.perf_counter() - started
    report["wall_seconds"] = round(wall, 1)
    md.append(f"Total wall time: {wall:.0f} s ({wall / 60:.1f} min) with n_jobs={args.n_jobs}.")
    body = "\n".join(md) + "\n"
    text = "# Forecast quality on the shared data\n\n" + body
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "quality.md", text)
    atomic_write_json(out_dir / "quality.json", _jsonable(report))
    written = [out_dir / "quality.md", out_dir / "quality.json"]
    if not args.no_docs_page:
        args.docs_page.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.docs_page, DOCS_HEADER + body)
        written.append(args.docs_page)
    sys.stdout.write(text)
    sys.stdout.write(f"written: {', '.join(str(p) for p in written)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
