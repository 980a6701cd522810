"""``python -m pipeline.train``: training only (fit, write versions, promote the champion)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli import parse_date, settings_from_args
from pipeline.errors import PipelineError
from pipeline.forecasters import parse_models
from pipeline.forecasters.arima import parse_order
from pipeline.logs import configure_logging
from pipeline.train.stage import TrainResult, train_many

logger = logging.getLogger("pipeline.train")

#: argparse dest -> Settings field, for the flags that override a setting.
SETTING_FLAGS = {
    "coin": "coins",
    "vs": "vs_currency",
    "freq": "frequencies",
    "models_dir": "models_dir",
    "data_dir": "data_dir",
    "n_jobs": "n_jobs",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.train",
        description="Fit forecasters, score them on a holdout, write versioned artifacts and "
        "promote the champion.",
    )
    parser.add_argument("--coin", help="CoinGecko coin id (default: every configured coin)")
    parser.add_argument("--vs", help="quote currency (default: settings VS_CURRENCY)")
    parser.add_argument("--freq", help="1h, 4h or 1d, comma-separated (default: FREQUENCIES)")
    parser.add_argument("--models", help="comma-separated: naive,drift,arima,prophet (default all)")
    parser.add_argument("--order", help="fix the ARIMA order, e.g. 1,1,0 (default: automatic)")
    parser.add_argument("--train-window", type=int, help="train on the last N points only")
    parser.add_argument("--until", help="train only on data strictly before YYYY-MM-DD (UTC)")
    parser.add_argument("--holdout", type=int, help="points held out for metrics (default horizon)")
    parser.add_argument("--models-dir", type=Path, help="models folder (default: MODELS_DIR)")
    parser.add_argument("--data-dir", type=Path, help="data folder (default: DATA_DIR)")
    parser.add_argument("--n-jobs", type=int, help="parallel fits, -1 = all cores (default N_JOBS)")
    parser.add_argument("--no-promote", action="store_true", help="write versions only")
    return parser


def format_metrics(result: TrainResult) -> str:
    lines = [f"{result.series.name} ({result.n_points} points)"]
    for model in sorted({*result.metrics, *result.failures}):
        if model in result.failures:
            lines.append(f"  {model:<8} FAILED  {result.failures[model]}")
            continue
        mase = result.metrics[model].get("mase")
        marker = "  <- champion" if model == result.champion else ""
        version = result.versions[model].version
        lines.append(f"  {model:<8} MASE {mase:.4f}  {version}{marker}")
    if result.champion:
        lines.append(f"  champion: {result.champion} ({result.champion_reason})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args, SETTING_FLAGS)
        configure_logging(settings.log_level, settings.log_format)
        models = parse_models(args.models)
        results = train_many(
            settings.series(),
            settings,
            models=models,
            order=parse_order(args.order),
            train_window=args.train_window,
            until=parse_date(args.until, "--until"),
            holdout=args.holdout,
            promote=not args.no_promote,
            n_jobs=args.n_jobs,
        )
    except PipelineError as exc:
        logger.error("training failed: %s", exc)
        return exc.exit_code
    for result in results:
        sys.stdout.write(format_metrics(result) + "\n")
    failed = [r.series.name for r in results if not r.ok or r.champion is None]
    if failed:
        logger.error(
            "no usable model (every fit failed or none qualified) for %s", ", ".join(failed)
        )
        return 1
    return 0
