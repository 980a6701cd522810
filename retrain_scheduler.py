"""Nightly retraining that never promotes a worse or broken model.

    python retrain_scheduler.py              # run forever: a cycle daily at RETRAIN_AT (UTC)
    python retrain_scheduler.py --once       # one cycle now; exit status = the cycle's outcome
    python retrain_scheduler.py --refresh-once   # one refresh of the served forecasts now
    python retrain_scheduler.py --every 6 hours | --at 03:30 | --dry-run | --history
    python retrain_scheduler.py --once --workers 2 | --scheduler tcp://HOST:8786   # on Dask

The long-running mode also refreshes the served forecasts after every period (REFRESH_*).
Exit codes: 0 cycle (refresh) succeeded, 1 a series failed, 2 bad usage, 3 another cycle or
refresh holds the lock.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline.cli import settings_from_args
from pipeline.errors import UsageError
from pipeline.logs import configure_logging
from pipeline.scheduling.service import Command, Options, Schedule, run

#: argparse dest -> Settings field, for the flags that override a setting.
SETTING_FLAGS = {"at": "retrain_at"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retrain_scheduler.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run one cycle now and exit")
    mode.add_argument(
        "--refresh-once",
        action="store_true",
        help="re-issue every served forecast from the latest price now (no training) and exit",
    )
    mode.add_argument(
        "--history",
        nargs="?",
        const=10,
        type=int,
        metavar="N",
        help="print the last N cycles (default 10) and exit",
    )
    mode.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--at", metavar="HH:MM", help="daily UTC time (default RETRAIN_AT)")
    when.add_argument(
        "--every",
        nargs=2,
        metavar=("N", "minutes|hours"),
        help="run every N minutes or hours instead of daily",
    )
    parser.add_argument("--models", help="comma-separated candidates (default: all)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run every series as a task on this Dask cluster, e.g. tcp://10.0.0.5:8786 "
        "(default DASK_SCHEDULER_ADDRESS; unset: in this process)",
    )
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run the series on a local Dask cluster of N processes",
    )
    parser.add_argument(
        "--no-catchup",
        action="store_true",
        help="do not run a missed cycle or the first refresh at start-up",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> Options:
    """The service options the flags ask for; a :class:`UsageError` when one is malformed."""
    from pipeline.forecasters import parse_models

    command: Command
    if args.history is not None:
        command = "history"
    elif args.dry_run:
        command = "dry-run"
    elif args.refresh_once:
        command = "refresh-once"
    else:
        command = "once" if args.once else "serve"
    return Options(
        command=command,
        schedule=Schedule.parse(args.every),
        models=parse_models(args.models) if args.models else None,
        catchup=not args.no_catchup,
        history_limit=args.history if args.history is not None else 10,
        scheduler=args.scheduler,
        workers=_workers(args.workers),
    )


def _workers(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise UsageError(f"--workers must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on unknown flags
    try:
        settings = settings_from_args(args, SETTING_FLAGS)
        configure_logging(settings.log_level, settings.log_format)
        options = options_from_args(args)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    return run(settings, options)


if __name__ == "__main__":
    raise SystemExit(main())
