"""The scheduler's Prometheus metrics, derived from the run history and the raw data files.

The values are read afresh from ``models/runs.jsonl`` and the raw ``.meta.json`` files each time
they are collected, so they survive restarts and two processes (a long-running scheduler and a
``--once`` run from cron) agree. They reach Prometheus two ways, both through
``prometheus_client``: a textfile (``models/scheduler.prom``, for node_exporter's textfile
collector, written atomically after every cycle) and, in the long-running mode, an HTTP endpoint
(``SCHEDULER_METRICS_PORT``).

=========================================== ======= ==========================================
``retrain_runs_total{outcome}``             counter cycles by outcome (success, partial,
                                                    failure, stopped)
``retrain_promotions_total{series}``        counter champion promotions per configured series
``retrain_last_success_timestamp_seconds``  gauge   end of the last (partly) successful cycle
``retrain_last_run_duration_seconds``       gauge   duration of the last cycle
``retrain_data_age_seconds{series}``        gauge   age of the newest raw price per series
=========================================== ======= ==========================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client import write_to_textfile as _write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.config import Settings
from pipeline.ingest import raw_path, read_meta
from pipeline.scheduling.history import CYCLE_OUTCOMES, last_success, read_history

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

        runs = CounterMetricFamily(
            "retrain_runs", "Retraining cycles by outcome.", labels=["outcome"]
        )
        outcomes = dict.fromkeys(CYCLE_OUTCOMES, 0)
        for rec in history:
            status = rec.get("status", "failure")
            outcomes[status] = outcomes.get(status, 0) + 1
        for outcome, count in sorted(outcomes.items()):
            runs.add_metric([outcome], count)
        yield runs

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
        ages = data_ages(settings, self.clock())
        if ages:
            age = GaugeMetricFamily(
                "retrain_data_age_seconds",
                "Age of the newest raw data point by series.",
                labels=["series"],
            )
            for name, seconds in sorted(ages.items()):
                age.add_metric([name], round(seconds))
            yield age


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
