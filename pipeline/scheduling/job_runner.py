"""``python -m pipeline.scheduling.job_runner <id>``: the process that runs one job.

Started by the API (:func:`pipeline.scheduling.jobs.spawn`), it owns the job's record from then
on: it waits for the cycle lock (or refuses, see :mod:`pipeline.scheduling.jobs`), runs the job
through the scheduler's own entry points and records the outcome:

* ``retrain``: :func:`pipeline.scheduling.cycle.run_cycle` on the job's series, so a new
  champion is promoted only through the nightly gate, and the cycle is in the run history;
* ``refresh``: :func:`pipeline.scheduling.refresh_job.run_refresh`;
* ``backtest``: :func:`pipeline.evaluation.compare.run` per series (the report is written,
  nothing is promoted), under the cycle lock.

SIGTERM (a ``DELETE`` of the job) stops it: at once while it waits, after the current stage when
it runs; so does the exit of the API process that started it (the record says which).
Exit codes: 0 succeeded, 1 failed or cancelled, 2 bad usage, 3 refused (lock held).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from pipeline.config import Settings, get_settings
from pipeline.errors import PipelineError
from pipeline.logs import configure_logging
from pipeline.scheduling.history import EXIT_LOCKED, LockBusyError, cycle_lock
from pipeline.scheduling.jobs import JobRecord, cancel_marker, read_record, write_record
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)

#: How often a queued job looks at the lock again (seconds).
WAIT_SECONDS = 2.0


def execute(
    settings: Settings, record: JobRecord, stop: threading.Event
) -> tuple[dict[str, Any], str, str]:
    """Run the job once: (run record, its status, a one-line summary).

    Raises :class:`LockBusyError`, having done nothing, when the lock is held.
    """
    series = [SeriesId.parse(name) for name in record.series]
    if record.kind == "retrain":
        from pipeline.scheduling.cycle import run_cycle

        cycle = run_cycle(settings, models=record.models, stop=stop, series_list=series)
        summary = ", ".join(f"{o.series}: {o.status}" for o in cycle.series)
        return asdict(cycle), cycle.status, summary
    if record.kind == "refresh":
        from pipeline.scheduling.refresh_job import run_refresh

        refresh = run_refresh(settings, series, stop=stop)
        summary = f"{refresh.issued} new issue(s); " + ", ".join(
            f"{s.get('series')}: {s.get('status')}" for s in refresh.series
        )
        return asdict(refresh), refresh.status, summary
    return _backtests(settings, record, series, stop)


def _backtests(
    settings: Settings, record: JobRecord, series: Sequence[SeriesId], stop: threading.Event
) -> tuple[dict[str, Any], str, str]:
    """compare_models' backtest and report of every series, under the cycle lock."""
    from pipeline.evaluation.compare import CompareOptions, run

    results: dict[str, dict[str, Any]] = {}
    with cycle_lock(settings, job="backtest"):
        for s in series:
            if stop.is_set():
                results[s.name] = {"status": "stopped"}
                continue
            out = io.StringIO()
            options = CompareOptions(
                coin=s.coin,
                vs=s.vs,
                freq=s.freq,
                models=",".join(record.models) if record.models else None,
                n_jobs=settings.n_jobs,
                no_plots=True,
            )
            try:
                code = run(options, settings, out=out)
            except PipelineError as exc:
                results[s.name] = {"status": "failed", "reason": str(exc)}
                logger.error("%s: backtest failed: %s", s.name, exc)
                continue
            finally:
                sys.stdout.write(out.getvalue())
                sys.stdout.flush()
            results[s.name] = {"status": "done" if code == 0 else "failed", "exit_code": code}
    statuses = {r["status"] for r in results.values()}
    status = (
        "stopped" if "stopped" in statuses else ("success" if statuses == {"done"} else "failure")
    )
    summary = ", ".join(f"{name}: {r['status']}" for name, r in results.items())
    return {"series": results}, status, summary


def _finish(
    settings: Settings, record: JobRecord, state: str, reason: str, code: int, started: float
) -> int:
    record.state = state  # type: ignore[assignment]
    record.reason, record.exit_code = reason, code
    record.ended_at = datetime.now(UTC)
    record.duration_seconds = round(time.monotonic() - started, 3)
    record.cancel_requested = record.cancel_requested or cancel_marker(settings, record.id).exists()
    write_record(settings, record)
    log = logger.info if state == "succeeded" else logger.error
    log("job %s %s: %s", record.id, state, reason, extra={"job": record.id})
    return code


def run_job(
    settings: Settings, job_id: str, stop: threading.Event, *, wait_seconds: float = WAIT_SECONDS
) -> int:
    """Run job ``job_id`` to its end and record it; the process's exit code."""
    record = read_record(settings, job_id)
    if record.final:
        logger.error("job %s already ended (%s)", job_id, record.state)
        return 2
    started = time.monotonic()
    marker = cancel_marker(settings, job_id)
    record.pid = os.getpid()
    waiting = None
    while True:
        if stop.is_set() or marker.exists():
            why = f"{_why(stop)} before it started"
            return _finish(settings, record, "cancelled", why, 1, started)
        record.state, record.reason, record.started_at = "running", "", datetime.now(UTC)
        write_record(settings, record)
        try:
            run, status, summary = execute(settings, record, stop)
        except LockBusyError as exc:
            record.started_at = None
            if not record.wait:
                return _finish(settings, record, "refused", str(exc), EXIT_LOCKED, started)
            reason = f"waiting for the lock: {exc}"
            record.state, record.reason = "queued", reason
            write_record(settings, record)
            if reason != waiting:
                logger.info("job %s %s", job_id, reason)
                waiting = reason
            stop.wait(wait_seconds)
            continue
        except PipelineError as exc:
            return _finish(settings, record, "failed", str(exc), exc.exit_code, started)
        except Exception as exc:  # noqa: BLE001 - the record must say what happened
            logger.exception("job %s crashed", job_id)
            reason = f"{type(exc).__name__}: {exc}"
            return _finish(settings, record, "failed", reason, 1, started)
        break
    record.run = run
    if status == "success":
        return _finish(settings, record, "succeeded", summary, 0, started)
    if status == "stopped" and (stop.is_set() or marker.exists()):
        return _finish(settings, record, "cancelled", f"{_why(stop)}: {summary}", 1, started)
    return _finish(settings, record, "failed", f"{status}: {summary}", 1, started)


class JobStop(threading.Event):
    """Set by SIGTERM (a cancel), or when the API process that started the job exits; says why."""

    reason = "cancelled"


def _why(stop: threading.Event) -> str:
    return getattr(stop, "reason", JobStop.reason)


def watch_parent(stop: JobStop, parent: int, every: float = 1.0) -> threading.Thread:
    """Stop the job (after its current stage) once its parent, the API process, is gone."""

    def watch() -> None:
        while not stop.wait(every):
            if os.getppid() != parent:
                stop.reason = "stopped: the API process that started it exited"
                logger.warning("the API process that started this job exited: stopping")
                stop.set()
                return

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.scheduling.service import stop_on_signals

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m pipeline.scheduling.job_runner JOB_ID\n")
        return 2
    try:
        settings = get_settings()
        configure_logging(settings.log_level, "text")
        stop = JobStop()
        watch_parent(stop, os.getppid())
        with stop_on_signals(stop):
            return run_job(settings, args[0], stop)
    except PipelineError as exc:
        logger.error("%s", exc)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
