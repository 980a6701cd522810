"""The scheduler's Prometheus metrics, derived from the run history and the raw data files.

The values are read afresh from ``models/runs.jsonl`` and the raw ``.meta.json`` files each time
they are collected, so they survive restarts and two processes (a long-running scheduler and a
``--once`` run from cron) agree. They reach Prometheus two ways, both through
``prometheus_client``: a textfile (``models/scheduler.prom``, for node_exporter's textfile
collector, written atomically after every cycle and refresh) and, in the long-running mode, an
HTTP endpoint (``SCHEDULER_METRICS_PORT``).

=========================================== ======= ==========================================
``retrain_runs_total{outcome}``             counter cycles by outcome (success, partial,
                                                    failure, stopped)
``retrain_promotions_total{series}``        counter champion promotions per configured series
``retrain_last_success_timestamp_seconds``  gauge   end of the last (partly) successful cycle
``retrain_last_run_duration_seconds``       gauge   duration of the last cycle
``retrain_data_age_seconds{series}``        gauge   age of the newest raw price per series
``refresh_runs_total{outcome}``             counter refreshes by outcome (success, partial,
                                                    failure)
``refresh_last_run_timestamp_seconds``      gauge   end of the last refresh
``refresh_last_run_duration_seconds``       gauge   duration of the last refresh
``refresh_last_success_timestamp_seconds``  gauge   per ``series``: end of the last refresh in
                                                    which it was refreshed (or had nothing new)
``refresh_versions{status}``                gauge   served versions by outcome in the last
                                                    refresh (issued, current, not_updated,
                                                    refused, failed)
``refresh_interval_seconds{series}``        gauge   the refresh cadence of each series the
                                                    scheduler refreshes (``REFRESH_ENABLED``
                                                    and ``REFRESH_MINUTES_<freq>`` above 0)
``ingest_circuit_state{provider}``          gauge   circuit breaker of each data provider:
                                                    0 closed, 1 half-open, 2 open
``ingest_circuit_failures{provider}``       gauge   its consecutive failed calls
=========================================== ======= ==========================================

The forecast ledger's families (``ledger_*``: live coverage, WIS ratio, matured points per series
and model) are listed in :mod:`pipeline.scheduling.ledger_metrics`.

The ``refresh_last_*`` and ``refresh_versions`` families appear once a refresh is recorded,
``retrain_last_*`` once a cycle is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client import write_to_textfile as _write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.config import Settings
from pipeline.ingest import raw_path, read_meta
from pipeline.ingest.breaker import PROVIDERS, STATE_VALUES, read_state
from pipeline.scheduling.history import (
    CYCLE_OUTCOMES,
    REFRESH,
    REFRESH_OK,
    REFRESH_OUTCOMES,
    last_success,
    read_history,
)
from pipeline.scheduling.ledger_metrics import ledger_families

logger = logging.getLogger(__name__)

METRICS_FILE = "scheduler.prom"

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SchedulerCollector(Collector):
    """Collects the scheduler's metric families from the history and raw files on each scrape."""

    def __init__(self, settings: Settings, clock: Clock = _utc_now) -> None:
        self.settings = settings
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        settings = self.settings
        history = read_history(settings)

        yield _outcome_counter(
            "retrain_runs", "Retraining cycles by outcome.", CYCLE_OUTCOMES, history
        )

        promotions = CounterMetricFamily(
            "retrain_promotions", "Champion promotions by series.", labels=["series"]
        )
        promoted: dict[str, int] = {}
        for rec in history:
            for o in rec.get("series", []):
                if o.get("status") == "promoted":
                    promoted[o["series"]] = promoted.get(o["series"], 0) + 1
        for series in settings.series():
            promotions.add_metric([series.name], promoted.get(series.name, 0))
        yield promotions

        success = last_success(settings, history)
        if success is not None:
            yield GaugeMetricFamily(
                "retrain_last_success_timestamp_seconds",
                "End of the last successful cycle.",
                value=success.timestamp(),
            )
        if history:
            yield GaugeMetricFamily(
                "retrain_last_run_duration_seconds",
                "Duration of the last cycle.",
                value=float(history[-1].get("duration_seconds", 0)),
            )
        yield from _gauge_by(
            "retrain_data_age_seconds",
            "Age of the newest raw data point by series.",
            "series",
            {
                name: round(seconds)
                for name, seconds in sorted(data_ages(settings, self.clock()).items())
            },
        )
        yield from refresh_families(settings, read_history(settings, kind=REFRESH))
        yield from breaker_families(settings)
        yield from ledger_families(settings, history + read_history(settings, kind=REFRESH))


def breaker_families(settings: Settings) -> Iterator[Metric]:
    """``ingest_circuit_*``: each provider's circuit-breaker state file, as every ingesting
    process shares it."""
    states = {p: read_state(Path(settings.data_dir), p) for p in PROVIDERS}
    yield from _gauge_by(
        "ingest_circuit_state",
        "Circuit breaker of the data provider: 0 closed, 1 half-open, 2 open.",
        "provider",
        {p: STATE_VALUES[s.state] for p, s in states.items()},
    )
    yield from _gauge_by(
        "ingest_circuit_failures",
        "Consecutive failed calls to the data provider.",
        "provider",
        {p: s.failures for p, s in states.items()},
    )


def _outcome_counter(name: str, doc: str, outcomes: tuple[str, ...], history: list[Any]) -> Metric:
    """A counter of ``history`` records by their ``status`` (every outcome, zeros included)."""
    counts = dict.fromkeys(outcomes, 0)
    for rec in history:
        status = rec.get("status", "failure")
        counts[status] = counts.get(status, 0) + 1
    family = CounterMetricFamily(name, doc, labels=["outcome"])
    for outcome, count in sorted(counts.items()):
        family.add_metric([outcome], count)
    return family


def _ended(record: dict[str, Any]) -> datetime | None:
    """When a history record ended (``None`` when unrecorded or unreadable)."""
    try:
        ended = datetime.fromisoformat(str(record["ended_at"]))
    except (KeyError, ValueError):
        return None
    return ended if ended.tzinfo is not None else ended.replace(tzinfo=UTC)


def refresh_families(settings: Settings, history: list[dict[str, Any]]) -> Iterator[Metric]:
    """The ``refresh_*`` families from the refresh records of the run history (oldest first)."""
    yield _outcome_counter(
        "refresh_runs", "Forecast refreshes by outcome.", REFRESH_OUTCOMES, history
    )
    if history:
        last = history[-1]
        ended = _ended(last)
        if ended is not None:
            yield GaugeMetricFamily(
                "refresh_last_run_timestamp_seconds",
                "End of the last forecast refresh.",
                value=ended.timestamp(),
            )
        yield GaugeMetricFamily(
            "refresh_last_run_duration_seconds",
            "Duration of the last forecast refresh.",
            value=float(last.get("duration_seconds", 0)),
        )
        yield from _gauge_by(
            "refresh_last_success_timestamp_seconds",
            "End of the last refresh in which the series was refreshed or had nothing new.",
            "series",
            refresh_successes(settings, history),
        )
        yield from _gauge_by(
            "refresh_versions",
            "Served versions by outcome in the last forecast refresh.",
            "status",
            {status: int(n) for status, n in (last.get("versions") or {}).items()},
        )
    yield from _gauge_by(
        "refresh_interval_seconds",
        "Seconds between scheduled forecast refreshes of the series.",
        "series",
        refresh_intervals(settings),
    )


def _gauge_by(name: str, doc: str, label: str, values: dict[str, float]) -> Iterator[Metric]:
    """A gauge with one sample per item of ``values``, labelled ``label``; none when empty."""
    if values:
        family = GaugeMetricFamily(name, doc, labels=[label])
        for key, value in values.items():
            family.add_metric([key], value)
        yield family


def refresh_successes(settings: Settings, history: list[dict[str, Any]]) -> dict[str, float]:
    """When (Unix seconds) each configured series was last refreshed fine (``refreshed`` or
    ``current``) according to the refresh records ``history``; a series never refreshed fine is
    left out."""
    succeeded: dict[str, float] = {}
    for rec in history:
        ended = _ended(rec)
        if ended is None:
            continue
        for outcome in rec.get("series", []):
            if outcome.get("status") in REFRESH_OK:
                succeeded[str(outcome.get("series"))] = ended.timestamp()
    return {s.name: succeeded[s.name] for s in settings.series() if s.name in succeeded}


def refresh_intervals(settings: Settings) -> dict[str, float]:
    """Seconds between the scheduled refreshes of each series the scheduler refreshes (none when
    ``REFRESH_ENABLED`` is off; a frequency whose ``REFRESH_MINUTES_<freq>`` is 0 is left out)."""
    if not settings.refresh_enabled:
        return {}
    intervals = {s.name: settings.refresh_interval(s.freq) for s in settings.series()}
    return {name: every.total_seconds() for name, every in intervals.items() if every is not None}


def data_ages(settings: Settings, now: datetime) -> dict[str, float]:
    """Seconds since the newest raw point of each configured series (from the raw meta files).

    A series built from another's raw file (4h from hourly) reports that file's age; a series
    without a readable meta file is left out.
    """
    ages = {}
    for series in settings.series():
        meta = read_meta(raw_path(Path(settings.data_dir), series.raw)) or {}
        try:
            last = datetime.fromisoformat(str(meta["last_ds"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            continue
        last = last if last.tzinfo is not None else last.replace(tzinfo=UTC)
        ages[series.name] = (now - last).total_seconds()
    return ages


def registry(settings: Settings, clock: Clock = _utc_now) -> CollectorRegistry:
    """A registry holding only the scheduler's metrics (no process or platform collectors)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SchedulerCollector(settings, clock))
    return reg


def metrics_text(settings: Settings, now: datetime | None = None) -> str:
    """The metrics in Prometheus' text format, as the textfile and the endpoint serve them."""
    clock: Clock = _utc_now if now is None else (lambda: now)
    return generate_latest(registry(settings, clock)).decode()


def write_metrics_file(settings: Settings) -> Path:
    """Write ``models/scheduler.prom`` atomically (for node_exporter's textfile collector)."""
    path = Path(settings.models_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_to_textfile(str(path), registry(settings))
    return path


def serve_metrics(settings: Settings, addr: str = "0.0.0.0") -> WSGIServer:
    """Serve the metrics on ``SCHEDULER_METRICS_PORT`` in a daemon thread.

    Stop it with ``server.shutdown(); server.server_close()``.
    """
    server, _thread = start_http_server(
        settings.scheduler_metrics_port, addr=addr, registry=registry(settings)
    )
    logger.info("scheduler metrics on %s:%d/metrics", addr, server.server_port)
    return server
