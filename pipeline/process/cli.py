"""``python -m pipeline.process``: rebuild processed series from raw data."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli import UsageParser, settings_from_args, split_list
from pipeline.errors import PipelineError, UsageError
from pipeline.logs import configure_logging
from pipeline.process.stage import process_series
from pipeline.series import SeriesId, freq_choices

# A fixed name, so records read the same under `python -m pipeline.process` (``__main__``).
logger = logging.getLogger("pipeline.process.stage")


def build_parser() -> argparse.ArgumentParser:
    p = UsageParser(
        prog="python -m pipeline.process",
        description="Rebuild data/processed/<coin>-<vs>-<freq>.csv (+ .meta.json) from raw data.",
    )
    p.add_argument("--coin", help="coin id(s), comma-separated (default: settings COINS)")
    p.add_argument("--vs", help="quote currency (default: settings VS_CURRENCY)")
    p.add_argument(
        "--freq", help=f"{freq_choices()}, comma-separated (default: settings FREQUENCIES)"
    )
    p.add_argument("--data-dir", type=Path, help="data folder (default: settings DATA_DIR)")
    p.add_argument(
        "--max-fill-gap", type=int, help="forward-fill gaps up to N steps (default: MAX_FILL_GAP)"
    )
    p.add_argument(
        "--keep-all", action="store_true", help="train on all data, even before a long gap"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        settings = settings_from_args(
            args, {"data_dir": "data_dir", "max_fill_gap": "max_fill_gap"}
        )
        configure_logging(settings.log_level, settings.log_format)
        coins = split_list(args.coin) or settings.coins
        freqs = split_list(args.freq) or settings.frequencies
        vs = args.vs or settings.vs_currency
        series_list = [SeriesId(c, vs, f) for c in coins for f in freqs]
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    code = 0
    for series in series_list:
        try:
            result = process_series(series, settings, keep_all=args.keep_all)
        except PipelineError as exc:
            logger.error("%s", exc, extra={"series": series.name})
            code = max(code, exc.exit_code)
            continue
        sys.stdout.write(
            f"{series.name}: {result.rows} rows ({result.imputed} imputed, {result.long_gaps} "
            f"long gaps), training from {result.train_start.isoformat()} "
            f"({result.training_rows} points), d={result.d} -> {result.path}\n"
        )
    return code
