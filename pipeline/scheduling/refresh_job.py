"""The scheduler's refresh job: new forecast issues after every period, between trainings.

Each configured series is refreshed every ``REFRESH_MINUTES_<freq>`` (hourly for 1h and 4h,
daily for 1d by default), ``REFRESH_OFFSET_SECONDS`` after the period closes (slots are counted
from 00:00 UTC, so an hourly refresh runs at HH:02 with the default offset). A refresh takes
the cycle lock, so it never runs at the same time as a retraining cycle: when another process
holds the lock the refresh is skipped (logged once) and tried again on the next look at the
schedule. Every refresh is recorded in the run history (kind ``refresh``) and in the metrics
textfile (:mod:`pipeline.scheduling.metrics`), a failed one is alerted like a failed cycle, and
the API is asked to reload when a new issue was written.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.ingest import ratelimit
from pipeline.scheduling.cycle import Stages, run_stage
from pipeline.scheduling.history import (
    REFRESH,
    LockBusyError,
    RefreshRecord,
    append_history,
    cycle_lock,
)
from pipeline.scheduling.ledger_update import update_ledger
from pipeline.scheduling.metrics import write_metrics_file
from pipeline.scheduling.notify import alert_refresh, notify_api
from pipeline.series import SeriesId
from pipeline.storage.sync import before_read

if TYPE_CHECKING:
    from pipeline.scheduling.cluster import Cluster

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How long a refresh that found the lock held waits before trying again.
BUSY_RETRY = timedelta(seconds=30)
#: What a refresh does, in order (shown by ``--dry-run``).
REFRESH_STEPS = ("ingest", "process", "update", "issue", "reload API")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def last_slot(now: datetime, every: timedelta, offset: timedelta) -> datetime:
    """The latest refresh time at or before ``now``: ``00:00 UTC + offset + k * every``."""
    k = (now.astimezone(UTC) - _EPOCH - offset) // every
    return _EPOCH + offset + k * every


def refresh_plan(settings: Settings, now: datetime, *, catchup: bool) -> dict[str, Any]:
    """What the refresh job would do (``--dry-run``): per series its schedule (``every N
    minutes`` or ``off``) and its next slot after ``now``; ``catchup_now`` when every series is
    refreshed at start-up too."""
    if not settings.refresh_enabled:
        return {"enabled": False}
    offset = timedelta(seconds=settings.refresh_offset_seconds)
    series: dict[str, dict[str, str | None]] = {}
    for s in settings.series():
        every = settings.refresh_interval(s.freq)
        series[s.name] = (
            {"schedule": "off", "next_run": None}
            if every is None
            else {
                "schedule": f"every {every // timedelta(minutes=1)} minutes",
                "next_run": (last_slot(now, every, offset) + every).isoformat(),
            }
        )
    return {
        "enabled": True,
        "catchup_now": catchup and any(v["next_run"] for v in series.values()),
        "offset_seconds": settings.refresh_offset_seconds,
        "steps": list(REFRESH_STEPS),
        "series": series,
    }


def run_refresh(
    settings: Settings,
    series: Sequence[SeriesId] | None = None,
    *,
    stages: Stages | None = None,
    stop: threading.Event | None = None,
    clock: Clock = _utc_now,
    cluster: Cluster | None = None,
) -> RefreshRecord:
    """One locked refresh of ``series`` (default: every configured one), recorded, alerted and
    followed by an API reload when an issue was written. ``stages`` supplies the ingest and
    process functions (the cycle's; tests inject fakes), each run with the stage time limit.
    With ``cluster`` each series is one task on that Dask cluster (see
    :mod:`pipeline.scheduling.cluster`); either way CoinGecko calls share one call budget.

    Raises :class:`~pipeline.scheduling.history.LockBusyError` (having done nothing) when a
    cycle or another refresh holds the lock.
    """
    from pipeline.refresh.stage import (
        VERSION_STATUSES,
        default_ingest,
        default_process,
        refresh_many,
    )

    stop = stop or threading.Event()
    timeout = settings.stage_timeout_seconds
    ingest: Callable[[SeriesId, Settings], Any] = stages.ingest if stages else default_ingest
    process: Callable[[SeriesId, Settings], Any] = stages.process if stages else default_process
    with cycle_lock(settings, job=REFRESH):
        before_read(settings)  # s3:// folders: pull the models and data the refresh reads
        started = time.monotonic()
        record = RefreshRecord(run_id=uuid.uuid4().hex[:12], started_at=clock().isoformat())
        todo = list(series or settings.series())
        if cluster is not None:
            record.executor = cluster.address
            outcomes, record.ingest_wait_seconds = cluster.run_refresh_series(
                todo, settings, ingest, process, stop, record.run_id, clock
            )
        else:
            with ratelimit.use(ratelimit.budget_for(settings)) as meter:
                outcomes = refresh_many(
                    todo,
                    settings,
                    ingest=lambda s, st: run_stage("ingest", lambda: ingest(s, st), timeout, stop),
                    process=lambda s, st: run_stage(
                        "process", lambda: process(s, st), timeout, stop
                    ),
                    clock=clock,
                )
            record.ingest_wait_seconds = round(meter.waited_seconds, 3)
        record.series = [o.summary() for o in outcomes]
        statuses = [v.status for o in outcomes for v in o.versions]
        record.versions = {status: statuses.count(status) for status in VERSION_STATUSES}
        record.conclude()
        record.ledger_recorded = update_ledger(settings, todo)
        if record.issued:
            record.reloaded_api = notify_api(settings)
        record.ended_at = clock().isoformat()
        record.duration_seconds = round(time.monotonic() - started, 3)
        append_history(settings, record)
        write_metrics_file(settings)
        alert_refresh(settings, record)
    log = logger.info if record.status == "success" else logger.error
    log("refresh %s: %s, %d new issue(s) in %.1f s", record.run_id, record.status, record.issued,
        record.duration_seconds, extra={"run_id": record.run_id})  # fmt: skip
    return record


class RefreshJob:
    """Decides which series are due and runs their refresh; the service loop calls
    :meth:`run_pending` and sleeps at most :meth:`seconds_until_next`.

    With ``catchup`` every series is due at start-up; otherwise the first refresh waits for the
    next slot.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        stages: Stages | None = None,
        stop: threading.Event | None = None,
        clock: Clock = _utc_now,
        catchup: bool = True,
        cluster: Cluster | None = None,
    ) -> None:
        self.settings, self.stages, self.clock, self.cluster = settings, stages, clock, cluster
        self.stop = stop or threading.Event()
        self.offset = timedelta(seconds=settings.refresh_offset_seconds)
        self.every: dict[SeriesId, timedelta] = {}
        for series in settings.series():
            interval = settings.refresh_interval(series.freq)
            if interval is not None:
                self.every[series] = interval
        now = clock()
        self.done: dict[SeriesId, datetime | None] = {
            s: None if catchup else last_slot(now, every, self.offset)
            for s, every in self.every.items()
        }
        self._busy_logged: frozenset[SeriesId] = frozenset()
        self._retry_at: datetime | None = None

    def due(self, now: datetime) -> list[SeriesId]:
        """The series whose latest slot has not been refreshed yet."""
        return [
            s
            for s, every in self.every.items()
            if (done := self.done[s]) is None or last_slot(now, every, self.offset) > done
        ]

    def seconds_until_next(self) -> float:
        """Seconds until a series is due (0 when one is now; a day when none is scheduled)."""
        now = self.clock()
        if not self.every:
            return 86400.0
        if self.due(now):
            wait = (self._retry_at - now).total_seconds() if self._retry_at else 0.0
            return max(0.0, wait)
        nxt = min(last_slot(now, e, self.offset) + e for e in self.every.values())
        return max(0.0, (nxt - now).total_seconds())

    def run_pending(self) -> RefreshRecord | None:
        """Refresh the series that are due; ``None`` when none is, or when the lock is held."""
        now = self.clock()
        due = self.due(now)
        if not due or self.stop.is_set() or (self._retry_at is not None and now < self._retry_at):
            return None
        try:
            record = run_refresh(
                self.settings,
                due,
                stages=self.stages,
                stop=self.stop,
                clock=self.clock,
                cluster=self.cluster,
            )
        except LockBusyError as exc:
            if frozenset(due) != self._busy_logged:
                logger.warning("refresh skipped, trying again shortly: %s", exc)
                self._busy_logged = frozenset(due)
            self._retry_at = now + BUSY_RETRY
            return None
        self._busy_logged, self._retry_at = frozenset(), None
        for s in due:
            self.done[s] = last_slot(now, self.every[s], self.offset)
        return record
