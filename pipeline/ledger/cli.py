"""``python -m pipeline ledger sync|score|report|replay``: the forecast ledger from the shell.

* ``sync``   record every issue of the artifact store the ledger lacks;
* ``score``  sync, then score every step whose price has arrived (and refresh the summaries);
* ``report`` write the live Markdown + PNG report of each chosen series;
* ``replay`` rebuild the ledger of each chosen series from its processed history, night by
  night from ``--since`` (see :mod:`pipeline.ledger.replay`).

Exit codes: 0 done, 1 the ledger could not be reached or a step failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.artifacts.store import ArtifactStore
from pipeline.cli import UsageParser, parse_timestamp, positive_int, settings_from_args
from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.forecasters import parse_models
from pipeline.ledger.db import Ledger, open_ledger
from pipeline.logs import configure_logging
from pipeline.series import freq_choices

logger = logging.getLogger(__name__)

SETTING_FLAGS = {
    "coin": "coins",
    "vs": "vs_currency",
    "freq": "frequencies",
    "data_dir": "data_dir",
    "models_dir": "models_dir",
    "reports_dir": "reports_dir",
}


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="python -m pipeline ledger",
        description="Record, score, report and replay served forecasts (the forecast ledger).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=UsageParser)
    for name, text in (
        ("sync", "record the store's issues that the ledger lacks"),
        ("score", "sync, then score every step whose price has arrived"),
        ("report", "write the live report (Markdown + PNG) of each series"),
        ("replay", "rebuild the ledger from the processed history, night by night"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--coin", help="coin id(s), comma-separated (default COINS)")
        p.add_argument("--vs", help="quote currency (default VS_CURRENCY)")
        p.add_argument("--freq", help=f"{freq_choices()}, comma-separated (default FREQUENCIES)")
        p.add_argument("--data-dir", type=Path, help="data folder (default DATA_DIR)")
        p.add_argument("--models-dir", type=Path, help="models folder (default MODELS_DIR)")
        if name == "report":
            p.add_argument("--reports-dir", type=Path, help="reports folder (default REPORTS_DIR)")
        if name == "replay":
            p.add_argument("--since", required=True, help="first night, YYYY-MM-DD (UTC)")
            p.add_argument("--until", help="last night (default: the last price)")
            p.add_argument("--models", default="naive,drift", help="models (default naive,drift)")
            p.add_argument("--champion", help="the model marked as served (default: the first)")
            p.add_argument(
                "--refit-every", type=positive_int, default=7,
                help="refit every N nights, update in between (default 7)",
            )  # fmt: skip
    return parser


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.ledger.record import sync
    from pipeline.ledger.score import score

    ledger = open_ledger(settings)
    try:
        series = settings.series()
        if args.command in ("sync", "score"):
            synced = sync(ledger, ArtifactStore(settings.models_dir), series)
            sys.stdout.write(f"recorded {synced.total} issue(s)\n")
            if args.command == "score":
                scored = score(ledger, settings, series)
                for name, n in scored.scored.items():
                    fixed = scored.corrected.get(name, 0)
                    sys.stdout.write(f"{name}: {n} step(s) scored, {fixed} correction(s)\n")
                for line in scored.skipped:
                    sys.stdout.write(f"skipped {line}\n")
            return 1 if synced.skipped else 0
        if args.command == "report":
            from pipeline.ledger.report import write_report

            for s in series:
                md, png = write_report(ledger, s.name, settings.reports_dir)
                sys.stdout.write(f"{s.name}: {md} {png}\n")
            return 0
        return _replay(args, settings, ledger)
    finally:
        ledger.close()


def _replay(args: argparse.Namespace, settings: Settings, ledger: Ledger) -> int:
    from pipeline.ledger.replay import replay
    from pipeline.process.stage import load_training_series

    models = parse_models(args.models)
    since = parse_timestamp(args.since, "--since").to_pydatetime()
    until = parse_timestamp(args.until, "--until").to_pydatetime() if args.until else None
    for s in settings.series():
        y = load_training_series(settings.data_dir, s)
        result = replay(
            ledger, s, y, since=since, until=until, models=models, champion=args.champion,
            horizon=settings.horizon(s.freq), window=settings.backtest_window,
            refit_every=args.refit_every, scale_window=settings.ledger_scale_window,
        )  # fmt: skip
        sys.stdout.write(
            f"{s.name}: {result.nights} nights, {result.issues} issues, fits "
            f"{sum(result.fits.values())}, updates {sum(result.updates.values())}\n"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        settings = settings_from_args(args, SETTING_FLAGS)
        configure_logging(settings.log_level, settings.log_format)
        return _run(args, settings)
    except PipelineError as exc:
        if not logging.getLogger().handlers:
            configure_logging()
        logger.error("%s", exc)
        return exc.exit_code
