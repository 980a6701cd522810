"""Retraining cycles: ingest -> process -> train -> gate -> promote, safely and on a schedule.

A cycle never changes a champion unless the new candidate was trained completely, passed the
quality rules and is not worse than the serving champion beyond a tolerance. Two cycles never
overlap (an OS-level lock), every cycle is recorded in ``models/runs.jsonl``, and the outcome is
exported as Prometheus metrics (a textfile-collector file, plus an HTTP port in the long-running
mode).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import requests
from tenacity import (
    RetryError,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings
from pipeline.errors import IngestError, PipelineError
from pipeline.evaluation.champion import GateDecision, backtest_gate
from pipeline.fileio import atomic_write_text
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)

HISTORY_FILE = "runs.jsonl"
LOCK_FILE = ".retrain.lock"
METRICS_FILE = "scheduler.prom"
EXIT_LOCKED = 3


class LockBusyError(PipelineError):
    """Another retraining cycle holds the lock."""


class StageTimeoutError(PipelineError):
    """A stage ran past its time limit."""


class StopRequestedError(PipelineError):
    """SIGTERM/SIGINT arrived; the cycle stops between stages."""


# -- schedule arithmetic (pure, tested with injected clocks) -----------------------------------
def next_daily_run(now: datetime, at: str) -> datetime:
    """The next UTC time ``HH:MM`` strictly after ``now``."""
    hour, minute = (int(x) for x in at.split(":"))
    candidate = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)


def catchup_due(last_success: datetime | None, now: datetime, interval: timedelta) -> bool:
    """Whether a cycle was missed: no success yet, or the last one is older than the interval."""
    return last_success is None or now - last_success > interval


# -- records -----------------------------------------------------------------------------------
@dataclass
class SeriesOutcome:
    series: str
    status: str  # promoted | kept | rejected | failed | stopped
    reason: str = ""
    stage: str | None = None
    candidate: str | None = None
    version: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    serving: str | None = None
    seconds: float = 0.0


@dataclass
class CycleRecord:
    run_id: str
    started_at: str
    ended_at: str = ""
    status: str = "running"  # success | partial | failure | stopped
    duration_seconds: float = 0.0
    series: list[SeriesOutcome] = field(default_factory=list)
    reloaded_api: bool | None = None

    @property
    def promoted(self) -> list[SeriesOutcome]:
        return [o for o in self.series if o.status == "promoted"]


def history_path(settings: Settings) -> Path:
    return Path(settings.models_dir) / HISTORY_FILE


def append_history(settings: Settings, record: CycleRecord) -> None:
    """Append one JSON line (a single write of a whole line, then fsync)."""
    path = history_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(record), default=str) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_history(settings: Settings, limit: int | None = None) -> list[dict[str, Any]]:
    """Cycle records, oldest first; a damaged line is skipped with a warning."""
    path = history_path(settings)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s:%d: unreadable history line skipped", path, number)
    return records[-limit:] if limit else records


def last_success(settings: Settings) -> datetime | None:
    for record in reversed(read_history(settings)):
        if record.get("status") in {"success", "partial"}:
            return datetime.fromisoformat(record["ended_at"])
    return None


# -- lock --------------------------------------------------------------------------------------
@contextlib.contextmanager
def cycle_lock(settings: Settings) -> Iterator[None]:
    """An exclusive ``flock``: released by the OS even if the process crashes."""
    path = Path(settings.models_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fh: TextIO = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole cycle
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise LockBusyError(
                f"another retraining cycle is running (lock {path} held by {holder}); "
                "nothing was done"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}")
        fh.flush()
        yield
    finally:
        fh.close()


# -- stages ------------------------------------------------------------------------------------
@dataclass
class Stages:
    """The stage functions a cycle calls (the same ones the CLI runs); tests inject fakes."""

    ingest: Callable[[SeriesId, Settings], Any]
    process: Callable[[SeriesId, Settings], Any]
    train: Callable[[SeriesId, Settings, Sequence[str]], Any]
    gate: Callable[[SeriesId, Settings, Any, str | None], GateDecision] = field(
        default=lambda *args: backtest_gate(*args)
    )


def default_stages() -> Stages:
    from pipeline.ingest import ingest_series
    from pipeline.process.stage import process_series
    from pipeline.train.stage import train_series

    def ingest(series: SeriesId, settings: Settings) -> Any:
        source_series = series.raw
        return ingest_series(source_series, settings)

    def train(series: SeriesId, settings: Settings, models: Sequence[str]) -> Any:
        return train_series(series, settings, models=models, promote=False)

    return Stages(ingest=ingest, process=process_series, train=train)


def run_stage(
    name: str, fn: Callable[[], Any], timeout: float, stop: threading.Event, retries: int = 1
) -> Any:
    """Run ``fn`` with a time limit; retry transient ingest failures with backoff.

    A stage that times out is abandoned (its thread may still finish, but nothing it returns is
    used, and training never promotes by itself), so the champion is never changed by it.
    """
    if stop.is_set():
        raise StopRequestedError(f"stop requested before {name}")

    @retry(
        retry=retry_if_exception_type(IngestError),
        stop=stop_after_attempt(max(1, retries)),
        wait=wait_exponential(multiplier=1, max=30),
        reraise=True,
        before_sleep=lambda state: logger.warning(
            "stage %s failed (%s); retrying",
            name,
            state.outcome.exception() if state.outcome else "",
        ),
    )
    def attempt() -> Any:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stage-{name}")
        future = pool.submit(fn)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            raise StageTimeoutError(f"stage {name} timed out after {timeout:g} s") from None
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    try:
        return attempt()
    except RetryError as exc:  # pragma: no cover - reraise=True makes this unreachable
        raise exc.last_attempt.exception() or exc from None


# -- one cycle ---------------------------------------------------------------------------------
def run_series(
    series: SeriesId,
    settings: Settings,
    stages: Stages,
    models: Sequence[str],
    stop: threading.Event,
) -> SeriesOutcome:
    started = time.monotonic()
    outcome = SeriesOutcome(series=series.name, status="failed")
    store = ArtifactStore(Path(settings.models_dir))
    timeout = settings.stage_timeout_seconds
    stage = "ingest"
    try:
        run_stage("ingest", lambda: stages.ingest(series, settings), timeout, stop, retries=2)
        stage = "process"
        run_stage("process", lambda: stages.process(series, settings), timeout, stop)
        stage = "train"
        result = run_stage("train", lambda: stages.train(series, settings, models), timeout, stop)
        stage = "gate"
        if not getattr(result, "versions", None):
            failures = getattr(result, "failures", {})
            raise PipelineError(f"no candidate model was trained: {failures}")
        serving = store.champion(series)
        serving_model = serving.model if serving is not None else None
        if serving is not None:
            outcome.serving = f"{serving.model}/{serving.version}"
        decision = run_stage(
            "gate", lambda: stages.gate(series, settings, result, serving_model), timeout, stop
        )
        outcome.reason = decision.reason
        outcome.candidate = decision.candidate
        outcome.metrics = dict(decision.summary.get(decision.candidate, {}))
        if stop.is_set():
            raise StopRequestedError("stop requested before promotion")
        meta = result.versions.get(decision.candidate)
        if decision.passed and meta is None:
            decision.passed = False
            outcome.reason = f"{decision.candidate} won the gate but has no trained version"
        if decision.passed and meta is not None:
            stage = "promote"
            outcome.version = meta.version
            store.promote(
                series, decision.candidate, meta.version, reason=f"scheduler: {decision.reason}"
            )
            outcome.status = "promoted"
        elif serving is None and "naive" in result.versions:
            # Nothing is served yet: the naive baseline is the safe first champion (it is the
            # yardstick every candidate must beat), so the API is not left without a model.
            stage = "promote"
            naive = result.versions["naive"]
            outcome.reason = f"bootstrap: no champion yet, serving naive; {decision.reason}"
            store.promote(series, "naive", naive.version, reason=f"scheduler: {outcome.reason}")
            outcome.candidate, outcome.version = "naive", naive.version
            outcome.metrics = dict(decision.summary.get("naive", {}))
            outcome.status = "promoted"
        else:
            outcome.status = "rejected"
        outcome.stage = None
    except StopRequestedError as exc:
        outcome.status, outcome.stage, outcome.reason = "stopped", stage, str(exc)
    except Exception as exc:  # noqa: BLE001 - one series failing must not stop the others
        outcome.status, outcome.stage, outcome.reason = "failed", stage, f"{stage}: {exc}"
        logger.error("%s failed at %s: %s", series.name, stage, exc, extra={"series": series.name})
    outcome.seconds = round(time.monotonic() - started, 3)
    return outcome


def run_cycle(
    settings: Settings,
    *,
    stages: Stages | None = None,
    models: Sequence[str] | None = None,
    stop: threading.Event | None = None,
    series_list: Sequence[SeriesId] | None = None,
) -> CycleRecord:
    """Run one locked cycle over every configured series, record it and export metrics.

    Raises :class:`LockBusyError` (having done nothing) when another cycle holds the lock.
    """
    from pipeline.forecasters import parse_models

    stop = stop or threading.Event()
    with cycle_lock(settings):
        stages = stages or default_stages()
        models = list(models) if models else parse_models(None)
        started = time.monotonic()
        record = CycleRecord(run_id=uuid.uuid4().hex[:12], started_at=datetime.now(UTC).isoformat())
        logger.info("retraining cycle %s started", record.run_id, extra={"run_id": record.run_id})
        for series in series_list or settings.series():
            if stop.is_set():
                record.series.append(
                    SeriesOutcome(series.name, "stopped", "stop requested before this series")
                )
                continue
            outcome = run_series(series, settings, stages, models, stop)
            record.series.append(outcome)
            logger.info(
                "%s: %s (%s)",
                series.name,
                outcome.status,
                outcome.reason,
                extra={"run_id": record.run_id, "series": series.name},
            )
        statuses = {o.status for o in record.series}
        if "stopped" in statuses:
            record.status = "stopped"
        elif statuses <= {"promoted", "kept", "rejected"}:
            record.status = "success"
        elif statuses & {"promoted", "kept", "rejected"}:
            record.status = "partial"
        else:
            record.status = "failure"
        if record.promoted:
            record.reloaded_api = notify_api(settings)
        record.ended_at = datetime.now(UTC).isoformat()
        record.duration_seconds = round(time.monotonic() - started, 3)
        append_history(settings, record)
        write_metrics_file(settings)
        alert_if_needed(settings, record)
        logger.info(
            "retraining cycle %s ended: %s in %.1f s",
            record.run_id,
            record.status,
            record.duration_seconds,
            extra={"run_id": record.run_id},
        )
        return record


# -- side channels: API reload, alerts, metrics -------------------------------------------------
ADMIN_HEADER = "X-Admin-Key"


def notify_api(settings: Settings) -> bool | None:
    """Ask the API to reload its models (when API_URL and ADMIN_API_KEY are set)."""
    if not settings.api_url or settings.admin_api_key is None:
        return None
    url = settings.api_url.rstrip("/") + "/model/reload"
    try:
        resp = requests.post(
            url,
            headers={ADMIN_HEADER: settings.admin_api_key.get_secret_value()},
            timeout=(settings.http_connect_timeout, settings.http_read_timeout),
        )
    except requests.RequestException as exc:
        logger.warning("could not ask the API to reload (%s): %s", url, exc)
        return False
    if resp.status_code != 200:
        logger.warning("API reload answered %s: %s", resp.status_code, resp.text[:200])
        return False
    logger.info("API reloaded its models")
    return True


def alert_if_needed(settings: Settings, record: CycleRecord) -> None:
    """POST a JSON alert on failures and rejected promotions (retried, bounded, never raises)."""
    bad = [o for o in record.series if o.status in {"failed", "rejected"}]
    if not settings.alert_webhook_url or not bad:
        return
    payload = {
        "source": "retrain_scheduler",
        "run_id": record.run_id,
        "status": record.status,
        "problems": [{"series": o.series, "status": o.status, "reason": o.reason} for o in bad],
    }
    url = settings.alert_webhook_url

    @retry(
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=settings.http_backoff_initial, max=10),
        retry=retry_if_exception_type(requests.RequestException),
        reraise=True,
    )
    def post() -> None:
        resp = requests.post(
            url, json=payload, timeout=(settings.http_connect_timeout, settings.http_read_timeout)
        )
        resp.raise_for_status()

    try:
        post()
    except requests.RequestException as exc:
        logger.error("alert webhook failed after retries: %s", exc)


def metrics_text(settings: Settings, now: datetime | None = None) -> str:
    """Prometheus text for the scheduler, derived from the run history and the raw files."""
    now = now or datetime.now(UTC)
    history = read_history(settings)
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("retrain_runs_total", "counter", "Retraining cycles by outcome.")
    outcomes = {"success": 0, "partial": 0, "failure": 0, "stopped": 0}
    for rec in history:
        outcomes[rec.get("status", "failure")] = outcomes.get(rec.get("status", "failure"), 0) + 1
    for outcome, count in sorted(outcomes.items()):
        lines.append(f'retrain_runs_total{{outcome="{outcome}"}} {count}')
    family("retrain_promotions_total", "counter", "Champion promotions by series.")
    promotions: dict[str, int] = {}
    for rec in history:
        for o in rec.get("series", []):
            if o.get("status") == "promoted":
                promotions[o["series"]] = promotions.get(o["series"], 0) + 1
    for s in settings.series():
        lines.append(f'retrain_promotions_total{{series="{s.name}"}} {promotions.get(s.name, 0)}')
    success = last_success(settings)
    if success is not None:
        family(
            "retrain_last_success_timestamp_seconds", "gauge", "End of the last successful cycle."
        )
        lines.append(f"retrain_last_success_timestamp_seconds {success.timestamp():.3f}")
    if history:
        family("retrain_last_run_duration_seconds", "gauge", "Duration of the last cycle.")
        lines.append(
            f"retrain_last_run_duration_seconds {float(history[-1].get('duration_seconds', 0))}"
        )
    ages = data_ages(settings, now)
    if ages:
        family("retrain_data_age_seconds", "gauge", "Age of the newest raw data point by series.")
        for name, age in sorted(ages.items()):
            lines.append(f'retrain_data_age_seconds{{series="{name}"}} {age:.0f}')
    return "\n".join(lines) + "\n"


def data_ages(settings: Settings, now: datetime) -> dict[str, float]:
    """Seconds since the newest raw point of each configured series (from raw meta files)."""
    ages = {}
    for s in settings.series():
        raw_series = s.raw
        meta = Path(settings.data_dir) / "raw" / f"{raw_series.name}.meta.json"
        try:
            last = json.loads(meta.read_text("utf-8"))["last_ds"]
            last_dt = datetime.fromisoformat(str(last).replace("Z", "+00:00"))
        except (OSError, KeyError, ValueError, json.JSONDecodeError):
            continue
        ages[s.name] = (now - last_dt).total_seconds()
    return ages


def write_metrics_file(settings: Settings) -> Path:
    """Write ``models/scheduler.prom`` atomically (for node_exporter's textfile collector)."""
    path = Path(settings.models_dir) / METRICS_FILE
    atomic_write_text(path, metrics_text(settings))
    return path
