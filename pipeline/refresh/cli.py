"""``python -m pipeline.refresh``: new forecast issues from the latest prices, no retraining.

Ingests, processes and updates every served version of the configured series (or those the
flags name), under the same lock as a retraining cycle. One line per series on stdout. Exit
codes: 0 every served version is refreshed or current, 1 a refresh was refused or failed, 2 bad
usage, 3 a retraining cycle or another refresh holds the lock.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli import UsageParser, settings_from_args
from pipeline.errors import PipelineError, UsageError
from pipeline.logs import configure_logging
from pipeline.refresh.stage import SeriesRefresh, default_ingest, refresh_many
from pipeline.scheduling.history import LockBusyError, cycle_lock
from pipeline.series import freq_choices

logger = logging.getLogger("pipeline.refresh.stage")

#: argparse dest -> Settings field, for the flags that override a setting.
SETTING_FLAGS = {
    "coin": "coins",
    "vs": "vs_currency",
    "freq": "frequencies",
    "data_dir": "data_dir",
    "models_dir": "models_dir",
}


def build_parser() -> argparse.ArgumentParser:
    p = UsageParser(
        prog="python -m pipeline.refresh",
        description="Write a new forecast issue of every served version from the latest price "
        "(incremental ingest, process, update without refitting).",
    )
    p.add_argument("--coin", help="coin id(s), comma-separated (default COINS)")
    p.add_argument("--vs", help="quote currency (default VS_CURRENCY)")
    p.add_argument("--freq", help=f"{freq_choices()}, comma-separated (default FREQUENCIES)")
    p.add_argument("--data-dir", type=Path, help="data folder (default DATA_DIR)")
    p.add_argument("--models-dir", type=Path, help="models folder (default MODELS_DIR)")
    p.add_argument(
        "--no-ingest", action="store_true", help="use the raw files as they are (no fetch)"
    )
    return p


def format_outcome(outcome: SeriesRefresh) -> str:
    """``<series>: <status> - <reason>``, then one indented line per version worth a look."""
    lines = [f"{outcome.series}: {outcome.status} - {outcome.reason}"]
    lines += [
        f"    {v.model}/{v.version}: {v.status} - {v.reason}"
        for v in outcome.versions
        if v.status not in ("issued", "current")
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        settings = settings_from_args(args, SETTING_FLAGS)
        configure_logging(settings.log_level, settings.log_format)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    ingest = None if args.no_ingest else default_ingest
    try:
        with cycle_lock(settings, job="refresh"):
            outcomes = refresh_many(settings.series(), settings, ingest=ingest)
    except LockBusyError as exc:
        logger.warning("%s", exc)
        return exc.exit_code
    except PipelineError as exc:
        logger.error("refresh failed: %s", exc)
        return exc.exit_code
    for outcome in outcomes:
        sys.stdout.write(format_outcome(outcome) + "\n")
    return 0 if all(o.ok for o in outcomes) else 1
