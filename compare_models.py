"""Compare forecasters with rolling-origin backtests, pick a champion, and run the quality gate.

    python compare_models.py --coin bitcoin --vs usd --freq 1d [--models naive,arima] \\
        [--start 2021-01-01 --end 2021-12-01 --step 30D --horizon 30 --train-window 1000]
    python compare_models.py --data ../shared/data/bitstamp_btcusd_1d_2014-2021.csv --freq 1d \\
        --gate --baseline quality_baseline.json

Thin on purpose: the comparison itself is :func:`pipeline.evaluation.compare.run`, the champion
and gate decision :mod:`pipeline.evaluation.champion`.

Exit codes: 0 ok (gate held), 1 gate failed, 2 bad usage or unusable data.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli import UsageParser
from pipeline.config import get_settings
from pipeline.errors import (
    DataValidationError,
    IngestError,
    PipelineError,
    ProcessingError,
    UsageError,
)
from pipeline.evaluation.champion import SELECTION_COVERAGE_BAND, SELECTION_MASE_TOLERANCE
from pipeline.evaluation.compare import DEFAULT_BASELINE, DEFAULT_GATE_CONFIG, CompareOptions, run
from pipeline.logs import configure_logging
from pipeline.series import FREQUENCIES

logger = logging.getLogger("compare_models")

#: Errors that mean "bad usage or unusable data" (exit 2).
USAGE_ERRORS = (UsageError, DataValidationError, ProcessingError, IngestError)


def build_parser() -> argparse.ArgumentParser:
    p = UsageParser(
        prog="compare_models.py",
        description="Rolling-origin backtests of the forecasters, champion selection, reports "
        "and the model-quality gate.",
    )
    p.add_argument("--coin", default=None, help="CoinGecko coin id (default: first configured)")
    p.add_argument("--vs", default=None, help="quote currency (default: settings VS_CURRENCY)")
    p.add_argument("--freq", default="1d", choices=list(FREQUENCIES))
    p.add_argument("--models", default=None, help="comma list (default: all); naive always runs")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data", type=Path, help="evaluate a CSV export instead of processed data")
    data.add_argument("--source", help="csv:PATH (same as --data PATH)")
    g = p.add_argument_group("protocol (defaults suit each frequency)")
    g.add_argument("--start", help="first origin (UTC date/time)")
    g.add_argument("--end", help="last origin (default: latest with a full horizon of actuals)")
    g.add_argument("--step", help="spacing of origins, e.g. 30D, 7D, 168h")
    g.add_argument("--horizon", type=int, help="steps forecast at each origin")
    g.add_argument("--origins", type=int, help="number of origins when --start is not given")
    g.add_argument("--train-window", type=int, help="sliding window of N points (default: all)")
    g.add_argument("--refit-every", type=int, help="refit every k origins (default 1)")
    r = p.add_argument_group("execution")
    r.add_argument("--n-jobs", type=int, default=-1, help="parallel workers (-1: all cores)")
    r.add_argument("--backend", choices=["loky", "dask"], default=None)
    r.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    o = p.add_argument_group("selection, reports and gate")
    lo, hi = SELECTION_COVERAGE_BAND
    o.add_argument(
        "--coverage-band",
        help=f"MIN,MAX of the champion's 95%% coverage (default {lo:.2f},{hi:.2f}; "
        "the gate has its own)",
    )
    o.add_argument(
        "--mase-tolerance",
        type=float,
        default=SELECTION_MASE_TOLERANCE,
        help="how much worse than naive's mean MASE the champion may be "
        f"(fraction, default {SELECTION_MASE_TOLERANCE:g})",
    )
    o.add_argument("--reports-dir", type=Path, help="default: settings REPORTS_DIR")
    o.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    o.add_argument("--promote", action="store_true", help="make the champion the served model")
    o.add_argument("--gate", action="store_true", help="apply the quality gate; exit 1 if it fails")
    o.add_argument("--gate-config", type=Path, default=DEFAULT_GATE_CONFIG)
    o.add_argument(
        "--baseline", type=Path, help="compare with this baseline (and reuse its protocol)"
    )
    o.add_argument(
        "--write-baseline",
        action="store_true",
        help=f"record this run as the series' baseline (in --baseline, default {DEFAULT_BASELINE})",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = get_settings()
        configure_logging(settings.log_level, settings.log_format)
        args = build_parser().parse_args(argv)
        return run(CompareOptions(**vars(args)), settings)
    except USAGE_ERRORS as exc:
        logger.error("%s", exc)
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except PipelineError as exc:
        logger.error("%s", exc)
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
