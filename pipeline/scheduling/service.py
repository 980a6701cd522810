"""The scheduler service behind ``retrain_scheduler.py``: one cycle, the schedule loop, the plan
and the history listing.

The loop runs a cycle daily at ``RETRAIN_AT`` (UTC) or every N minutes/hours, catches up on a
missed cycle at start-up, refreshes the served forecasts after every period in between
(:mod:`pipeline.scheduling.refresh_job`, when ``REFRESH_ENABLED``), serves the metrics on
``SCHEDULER_METRICS_PORT`` and stops between stages on SIGTERM/SIGINT. Exit codes: 0 the cycle
(or refresh) succeeded, 1 a series failed, 2 bad usage, 3 another cycle or refresh holds the
lock.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Literal, TextIO

import schedule

from pipeline.config import Settings
from pipeline.errors import PipelineError, UsageError
from pipeline.logs import redact
from pipeline.scheduling.cluster import Cluster
from pipeline.scheduling.cycle import Stages, run_cycle
from pipeline.scheduling.history import (
    EXIT_LOCKED,
    LockBusyError,
    history_path,
    last_success,
    read_history,
)
from pipeline.scheduling.lock import describe_lock
from pipeline.scheduling.metrics import serve_metrics, write_metrics_file
from pipeline.scheduling.refresh_job import RefreshJob, refresh_plan, run_refresh

logger = logging.getLogger(__name__)

#: The units ``--every N UNIT`` accepts, mapped to the schedule's unit.
UNITS = {"minute": "minutes", "minutes": "minutes", "hour": "hours", "hours": "hours"}
#: What a cycle does, in order (shown by ``--dry-run``).
CYCLE_STEPS = ("ingest", "process", "train", "gate", "promote", "reload API")
#: The longest the loop sleeps between looks at the schedule (seconds).
MAX_IDLE_SECONDS = 30.0

Command = Literal["serve", "once", "refresh-once", "dry-run", "history"]


def next_daily_run(now: datetime, at: str) -> datetime:
    """The next UTC time ``HH:MM`` strictly after ``now``."""
    hour, minute = (int(x) for x in at.split(":"))
    candidate = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)


def catchup_due(last: datetime | None, now: datetime, interval: timedelta) -> bool:
    """Whether a cycle was missed: no success yet, or the last one is older than the interval."""
    return last is None or now - last > interval


@dataclass(frozen=True)
class Schedule:
    """Daily at ``RETRAIN_AT`` (unit ``days``), or every ``count`` minutes or hours."""

    unit: str = "days"
    count: int = 1

    @classmethod
    def parse(cls, every: tuple[str, str] | list[str] | None) -> Schedule:
        """From ``--every N UNIT`` (``None``: daily); a :class:`UsageError` when malformed."""
        if not every:
            return cls()
        count_text, unit_text = every
        unit = UNITS.get(unit_text.lower())
        if unit is None or not count_text.isdigit() or int(count_text) < 1:
            raise UsageError("--every takes a positive number and 'minutes' or 'hours'")
        return cls(unit, int(count_text))

    @property
    def interval(self) -> timedelta:
        return timedelta(**{self.unit: self.count})

    def describe(self, at: str) -> str:
        return f"daily at {at} UTC" if self.unit == "days" else f"every {self.count} {self.unit}"

    def next_run(self, now: datetime, at: str) -> datetime:
        return next_daily_run(now, at) if self.unit == "days" else now + self.interval

    def install(self, runner: schedule.Scheduler, at: str, job: Callable[[], Any]) -> schedule.Job:
        if self.unit == "days":
            return runner.every().day.at(at, "UTC").do(job)
        return getattr(runner.every(self.count), self.unit).do(job)


@dataclass(frozen=True)
class Options:
    """What the command line asked for."""

    command: Command = "serve"
    schedule: Schedule = Schedule()
    models: list[str] | None = None  # None: every default candidate
    catchup: bool = True  # run a missed cycle (RETRAIN_CATCHUP allowing) and a refresh at start
    history_limit: int = 10
    scheduler: str | None = None  # a Dask cluster's address (default DASK_SCHEDULER_ADDRESS)
    workers: int | None = None  # or a local Dask cluster of this many worker processes


def catchup_now(settings: Settings, options: Options, now: datetime) -> bool:
    """Whether the loop starts with a cycle because the last success is too old."""
    return (
        options.catchup
        and settings.retrain_catchup
        and catchup_due(last_success(settings), now, options.schedule.interval)
    )


def run_once(
    settings: Settings,
    models: list[str] | None,
    stop: threading.Event,
    *,
    stages: Stages | None = None,
    out: TextIO | None = None,
    cluster: Cluster | None = None,
) -> int:
    """One cycle; one line per series on ``out``. 0 success, 1 a series failed, 3 locked."""
    return _report(
        lambda: run_cycle(settings, stages=stages, models=models, stop=stop, cluster=cluster),
        lambda o: (o.series, o.status, o.reason),
        out or sys.stdout,
    )


def refresh_once(
    settings: Settings, stop: threading.Event, *, stages: Stages | None = None,
    out: TextIO | None = None, cluster: Cluster | None = None,
) -> int:  # fmt: skip
    """One refresh of every series; one line per series. 0 ok, 1 a refresh failed, 3 locked."""
    return _report(
        lambda: run_refresh(settings, stages=stages, stop=stop, cluster=cluster),
        lambda o: (o["series"], o["status"], o["reason"]),
        out or sys.stdout,
    )


def _report(
    job: Callable[[], Any], fields: Callable[[Any], tuple[str, str, str]], out: TextIO
) -> int:
    """Run a locked ``job``, write ``series: status - reason`` per series; the exit code."""
    try:
        record = job()
    except LockBusyError as exc:
        logger.warning("%s", exc)
        return EXIT_LOCKED
    except PipelineError as exc:  # e.g. the run history could not be written (disk full)
        logger.error("%s", exc)
        return exc.exit_code
    for outcome in record.series:
        series, status, reason = fields(outcome)
        out.write(f"{series}: {status} - {reason}\n")
    return 0 if record.status == "success" else 1


def print_history(settings: Settings, limit: int, out: TextIO | None = None) -> int:
    """The last ``limit`` cycles, one line each and one per series below it."""
    out = out or sys.stdout
    records = read_history(settings, limit)
    if not records:
        out.write(f"no cycles recorded yet in {history_path(settings)}\n")
        return 0
    for rec in records:
        out.write(
            f"{rec['started_at'][:19]}  {rec['run_id']}  {rec['status']:<8} "
            f"{rec.get('duration_seconds', 0):>8.1f}s\n"
        )
        for o in rec.get("series", []):
            chosen = f"{o.get('candidate')}/{o.get('version')}" if o.get("candidate") else "-"
            mase = o.get("metrics", {}).get("mase")
            mase_text = f"{mase:.3f}" if isinstance(mase, int | float) else "-"
            out.write(
                f"    {o['series']:<22} {o['status']:<9} {chosen:<40} mase={mase_text}  "
                f"{o.get('reason', '')}\n"
            )
    return 0


def plan(settings: Settings, options: Options, now: datetime) -> dict[str, Any]:
    """What the scheduler would do (``--dry-run``); a password in API_URL is shown masked."""
    cluster = Cluster.from_options(settings, options.scheduler, options.workers)
    return {
        "series": [s.name for s in settings.series()],
        "models": options.models or "all defaults",
        "schedule": options.schedule.describe(settings.retrain_at),
        "next_run": options.schedule.next_run(now, settings.retrain_at).isoformat(),
        "catchup_now": catchup_now(settings, options, now),
        "stages": list(CYCLE_STEPS),
        "runs_on": cluster.describe() if cluster is not None else "this process",
        "refresh": refresh_plan(settings, now, catchup=options.catchup),
        "models_dir": str(settings.models_dir),
        "lock": describe_lock(settings),
        "api_url": redact(settings.api_url) if settings.api_url else None,
    }


def serve(
    settings: Settings,
    options: Options,
    stop: threading.Event,
    *,
    stages: Stages | None = None,
    now: datetime | None = None,
    metrics_addr: str = "0.0.0.0",
    cluster: Cluster | None = None,
) -> int:
    """The schedule loop: runs until ``stop`` is set (by a signal), then returns 0.

    ``now`` is the start-up time the catch-up decision uses (default: the clock).
    """
    server = serve_metrics(settings, metrics_addr) if settings.scheduler_metrics_port else None
    try:
        write_metrics_file(settings)

        def job() -> None:
            code = run_once(settings, options.models, stop, stages=stages, cluster=cluster)
            logger.info("cycle finished with exit status %d", code)

        runner = schedule.Scheduler()
        options.schedule.install(runner, settings.retrain_at, job)
        if catchup_now(settings, options, now or datetime.now(UTC)):
            logger.info(
                "last successful cycle is older than %s: catching up now",
                options.schedule.interval,
            )
            job()
        logger.info("next cycle at %s (local clock)", runner.next_run)
        refresher = None
        if settings.refresh_enabled:
            refresher = RefreshJob(
                settings, stages=stages, stop=stop, catchup=options.catchup, cluster=cluster
            )
        while not stop.is_set():
            runner.run_pending()
            idle = max(1.0, runner.idle_seconds or 1.0)
            if refresher is not None:
                refresher.run_pending()
                idle = min(idle, max(1.0, refresher.seconds_until_next()))
            stop.wait(timeout=min(MAX_IDLE_SECONDS, idle))
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    logger.info("scheduler stopped")
    return 0


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (the cycle ends after its current stage) while inside."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.warning("signal %d received: stopping after the current stage", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(settings: Settings, options: Options, out: TextIO | None = None) -> int:
    """Do what ``options.command`` asks; the exit code of ``retrain_scheduler.py``."""
    out = out or sys.stdout
    if options.command == "history":
        return print_history(settings, options.history_limit, out)
    if options.command == "dry-run":
        out.write(json.dumps(plan(settings, options, datetime.now(UTC)), indent=2) + "\n")
        return 0
    stop = threading.Event()
    cluster = Cluster.from_options(settings, options.scheduler, options.workers)
    with stop_on_signals(stop), cluster or nullcontext():
        if options.command == "refresh-once":
            return refresh_once(settings, stop, out=out, cluster=cluster)
        if options.command == "once":
            try:
                return run_once(settings, options.models, stop, out=out, cluster=cluster)
            except PipelineError as exc:
                logger.error("%s", exc)
                return exc.exit_code
        return serve(settings, options, stop, cluster=cluster)
