"""``python -m pipeline.ingest``: fetch price history into ``data/raw/``.

Every flag defaults from the settings (environment / ``.env``). Exit codes: 0 every series
ingested, 1 a fetch or validation failed for at least one series, 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli import date_arg, positive_int, settings_from_args, split_list
from pipeline.config import Settings
from pipeline.errors import PipelineError, UsageError
from pipeline.ingest.stage import (
    IngestResult,
    check_source,
    ingest_many,
    raw_series,
)
from pipeline.logs import configure_logging
from pipeline.series import FREQUENCY_TABLE, RAW_FREQUENCIES, SeriesId, freq_choices

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.ingest",
        description="Fetch price history into DATA_DIR/raw/<coin>-<vs>-<freq>.csv "
        "(validated, merged, written atomically). Flags default from settings/env.",
    )
    parser.add_argument(
        "--source",
        help="auto (CoinGecko, offline -> simulated sample) | coingecko | csv:PATH | sample "
        "[SOURCE]",
    )
    parser.add_argument(
        "--coin", help="CoinGecko id(s), comma-separated, e.g. bitcoin,ethereum [COINS]"
    )
    parser.add_argument("--vs", help="quote currency, e.g. usd [VS_CURRENCY]")
    built = "; ".join(
        f"{name} there means {f.raw} here" for name, f in FREQUENCY_TABLE.items() if f.raw != name
    )
    parser.add_argument(
        "--freq",
        help=f"{freq_choices(raw_only=True, last='and/or')}, comma-separated "
        f"[FREQUENCIES{'; ' + built if built else ''}]",
    )
    window = parser.add_mutually_exclusive_group()
    window.add_argument(
        "--days", type=positive_int, help="history length in days [HISTORY_DAYS on a first run]"
    )
    window.add_argument("--since", type=date_arg, help="start date YYYY-MM-DD (UTC)")
    parser.add_argument("--data-dir", type=Path, help="data folder [DATA_DIR]")
    parser.add_argument("--base-url", help="CoinGecko API base URL [COINGECKO_BASE_URL]")
    return parser


#: argparse dest -> Settings field, for the flags that override a setting.
SETTING_FLAGS = {
    "source": "source",
    "coin": "coins",
    "vs": "vs_currency",
    "data_dir": "data_dir",
    "base_url": "coingecko_base_url",
}


def _series(args: argparse.Namespace, settings: Settings) -> list[SeriesId]:
    if args.freq is None:
        return raw_series(settings)
    wanted = split_list(args.freq) or []
    bad = [f for f in wanted if f not in RAW_FREQUENCIES]
    if bad or not wanted:
        raise UsageError(f"--freq {args.freq!r}: use {freq_choices(raw_only=True, last='and/or')}")
    freqs = list(dict.fromkeys(wanted))
    return [SeriesId(c, settings.vs_currency, f) for c in settings.coins for f in freqs]


def _describe(result: IngestResult) -> str:
    if result.note:
        return f"ok ({result.note}), {result.rows_total} rows in {result.path}"
    return (
        f"ok, source {result.source_used}: +{result.rows_added} new, {result.rows_updated} "
        f"updated, {result.rows_total} rows in {result.path}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad flags
    try:
        settings = settings_from_args(args, SETTING_FLAGS)
        configure_logging(settings.log_level, settings.log_format)
        source = check_source(settings.source)
        series = _series(args, settings)
        if source.startswith("csv:") and len(series) > 1:
            raise UsageError("--source csv:PATH holds one series: give one --coin and one --freq")
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2

    exit_code = 0
    for one, outcome in ingest_many(
        series, settings, source=source, days=args.days, since=args.since
    ):
        if isinstance(outcome, PipelineError):
            sys.stdout.write(f"{one.name}: FAILED: {outcome}\n")
            exit_code = max(exit_code, outcome.exit_code)
        else:
            sys.stdout.write(f"{one.name}: {_describe(outcome)}\n")
    return exit_code
