"""Nightly retraining that never promotes a worse or broken model.

    python retrain_scheduler.py              # run forever: a cycle daily at RETRAIN_AT (UTC)
    python retrain_scheduler.py --once       # one cycle now; exit status = the cycle's outcome
    python retrain_scheduler.py --every 6 hours | --at 03:30 | --dry-run | --history

Exit codes: 0 cycle succeeded, 1 a series failed, 2 bad usage, 3 another cycle holds the lock.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import schedule

from pipeline.config import Settings, load_settings
from pipeline.errors import PipelineError, UsageError
from pipeline.logs import configure_logging
from pipeline.scheduling import cycle as sched

logger = logging.getLogger("retrain_scheduler")

UNITS = {"minute": "minutes", "minutes": "minutes", "hour": "hours", "hours": "hours"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="retrain_scheduler.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run one cycle now and exit")
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
    parser.add_argument(
        "--no-catchup", action="store_true", help="do not run a missed cycle at start-up"
    )
    return parser.parse_args(argv)


def interval_of(args: argparse.Namespace) -> tuple[str, int, timedelta]:
    """(unit, count, interval) of the schedule; unit 'days' means daily at a time."""
    if args.every:
        count_text, unit_text = args.every
        unit = UNITS.get(unit_text.lower())
        if unit is None or not count_text.isdigit() or int(count_text) < 1:
            raise UsageError("--every takes a positive number and 'minutes' or 'hours'")
        count = int(count_text)
        return unit, count, timedelta(**{unit: count})
    return "days", 1, timedelta(days=1)


def build_schedule(
    scheduler: schedule.Scheduler, args: argparse.Namespace, at: str, job: Any
) -> schedule.Job:
    unit, count, _ = interval_of(args)
    if unit == "days":
        return scheduler.every().day.at(at, "UTC").do(job)
    return getattr(scheduler.every(count), unit).do(job)


class MetricsServer:
    """Serves the scheduler's metrics text on ``/metrics`` (Prometheus scrapes it)."""

    def __init__(self, settings: Settings) -> None:
        settings_ref = settings

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = sched.metrics_text(settings_ref).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                logger.debug("metrics: " + format, *args)

        self.server = ThreadingHTTPServer(("0.0.0.0", settings.scheduler_metrics_port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_once(settings: Settings, models: list[str] | None, stop: threading.Event) -> int:
    try:
        record = sched.run_cycle(settings, models=models, stop=stop)
    except sched.LockBusyError as exc:
        logger.warning("%s", exc)
        return sched.EXIT_LOCKED
    for outcome in record.series:
        sys.stdout.write(f"{outcome.series}: {outcome.status} - {outcome.reason}\n")
    return 0 if record.status == "success" else 1


def print_history(settings: Settings, limit: int) -> int:
    records = sched.read_history(settings, limit)
    if not records:
        sys.stdout.write(f"no cycles recorded yet in {sched.history_path(settings)}\n")
        return 0
    for rec in records:
        sys.stdout.write(
            f"{rec['started_at'][:19]}  {rec['run_id']}  {rec['status']:<8} "
            f"{rec.get('duration_seconds', 0):>8.1f}s\n"
        )
        for o in rec.get("series", []):
            chosen = f"{o.get('candidate')}/{o.get('version')}" if o.get("candidate") else "-"
            mase = o.get("metrics", {}).get("mase")
            mase_text = f"{mase:.3f}" if isinstance(mase, int | float) else "-"
            sys.stdout.write(
                f"    {o['series']:<22} {o['status']:<9} {chosen:<40} mase={mase_text}  "
                f"{o.get('reason', '')}\n"
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        settings = load_settings()
        if args.at:
            settings = load_settings(retrain_at=args.at)
        configure_logging(settings.log_level, settings.log_format)
        unit, count, interval = interval_of(args)
        models = [m.strip() for m in args.models.split(",")] if args.models else None
        if models:
            from pipeline.forecasters import parse_models

            models = parse_models(args.models)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2

    if args.history is not None:
        return print_history(settings, args.history)

    now = datetime.now(UTC)
    if args.dry_run:
        plan = {
            "series": [s.name for s in settings.series()],
            "models": models or "all defaults",
            "schedule": f"daily at {settings.retrain_at} UTC"
            if unit == "days"
            else f"every {count} {unit}",
            "next_run": (
                sched.next_daily_run(now, settings.retrain_at) if unit == "days" else now + interval
            ).isoformat(),
            "catchup_now": (
                not args.no_catchup
                and settings.retrain_catchup
                and sched.catchup_due(sched.last_success(settings), now, interval)
            ),
            "stages": ["ingest", "process", "train", "gate", "promote", "reload API"],
            "models_dir": str(settings.models_dir),
            "api_url": settings.api_url,
        }
        sys.stdout.write(json.dumps(plan, indent=2, default=str) + "\n")
        return 0

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.warning("signal %d received: stopping after the current stage", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if args.once:
        try:
            return run_once(settings, models, stop)
        except PipelineError as exc:
            logger.error("%s", exc)
            return exc.exit_code

    metrics_server = None
    if settings.scheduler_metrics_port:
        metrics_server = MetricsServer(settings)
        metrics_server.start()
        logger.info("scheduler metrics on :%d/metrics", settings.scheduler_metrics_port)
    sched.write_metrics_file(settings)

    def job() -> None:
        code = run_once(settings, models, stop)
        logger.info("cycle finished with exit status %d", code)

    runner = schedule.Scheduler()
    build_schedule(runner, args, settings.retrain_at, job)
    if (
        not args.no_catchup
        and settings.retrain_catchup
        and sched.catchup_due(sched.last_success(settings), now, interval)
    ):
        logger.info("last successful cycle is older than %s: catching up now", interval)
        job()
    logger.info("next cycle at %s (local clock)", runner.next_run)
    while not stop.is_set():
        runner.run_pending()
        stop.wait(timeout=min(30.0, max(1.0, runner.idle_seconds or 1.0)))
    if metrics_server is not None:
        metrics_server.stop()
    logger.info("scheduler stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
