"""Training jobs started over HTTP (``/admin/jobs``): their records, processes and cancellation.

A job is one retraining cycle, refresh or backtest run by its own process
(``python -m pipeline.scheduling.job_runner <id>``, see :mod:`pipeline.scheduling.job_runner`),
never inside an API worker. Its record is a JSON file ``<MODELS_DIR>/jobs/<id>.json`` replaced
atomically by whoever owns it at the time: the API writes it queued, the job process writes every
state after that; its log is ``<id>.log`` beside it. So the records outlive the API process, and
an API that restarts finds them as they were. A job whose process is gone without recording an
outcome (killed, machine rebooted) is marked ``failed`` when it is next read.

Jobs take the same lock as the scheduler's cycles (:func:`pipeline.scheduling.history.cycle_lock`):
one at a time. A job that finds it held waits its turn (``queued``, the reason says who holds
it) or, when asked not to wait, is ``refused`` with that reason (exit code 3).

Cancelling (``DELETE``) leaves a marker file and sends SIGTERM to the job's process: a queued
job ends at once, a running one after its current stage (the cycle's own stop rule), as
``cancelled``. A job stops the same way when the API process that started it exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from pipeline.config import Settings
from pipeline.errors import PipelineError, UsageError
from pipeline.fileio import atomic_write_json
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)

JOBS_DIR = "jobs"
JobKind = Literal["retrain", "refresh", "backtest"]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled", "refused"]
FINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "refused"})
_ID_RE = re.compile(r"[0-9a-f]{12}")
#: A job with no process after this long was never started (the API died while starting it).
START_GRACE_SECONDS = 60.0


class JobNotFoundError(PipelineError):
    """No job has this id."""

    exit_code = 2


class JobRequest(BaseModel):
    """What ``POST /admin/jobs`` asks for."""

    model_config = {"extra": "forbid"}

    kind: JobKind = Field(
        description="retrain: the nightly cycle (ingest, process, train, gate, promote); "
        "refresh: new forecast issues from the latest prices; backtest: compare_models' "
        "rolling-origin backtest and report (no promotion)"
    )
    series: list[str] | None = Field(
        None, description="series names such as bitcoin-usd-1d; default: every configured one"
    )
    models: list[str] | None = Field(
        None, description="retrain and backtest: models to fit (default: every default model)"
    )
    wait: bool = Field(
        True,
        description="when another cycle or job holds the lock: wait for it (true) or refuse "
        "at once (false: 409, or the job ends refused)",
    )


class JobRecord(BaseModel):
    """One job: what was asked, its state and timings, its process and the run record."""

    id: str
    kind: JobKind
    series: list[str]
    models: list[str] | None = None
    wait: bool = True
    state: JobState = "queued"
    reason: str = Field(default="", description="why it is in this state (e.g. who holds the lock)")
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: float | None = None
    pid: int | None = None
    exit_code: int | None = None
    cancel_requested: bool = False
    run: dict[str, Any] | None = Field(
        default=None,
        description="the cycle's or refresh's history record, or the backtests' summary",
    )

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def jobs_dir(settings: Settings) -> Path:
    return Path(settings.models_dir) / JOBS_DIR


def _path(settings: Settings, job_id: str, suffix: str) -> Path:
    if not _ID_RE.fullmatch(job_id):
        raise JobNotFoundError(f"no job {job_id!r}: job ids are 12 hex digits")
    return jobs_dir(settings) / f"{job_id}{suffix}"


def record_path(settings: Settings, job_id: str) -> Path:
    return _path(settings, job_id, ".json")


def log_path(settings: Settings, job_id: str) -> Path:
    return _path(settings, job_id, ".log")


def cancel_marker(settings: Settings, job_id: str) -> Path:
    return _path(settings, job_id, ".cancel")


def write_record(settings: Settings, record: JobRecord) -> None:
    """Replace the job's record atomically."""
    atomic_write_json(record_path(settings, record.id), record.model_dump(mode="json"))


def read_record(settings: Settings, job_id: str) -> JobRecord:
    path = record_path(settings, job_id)
    try:
        return JobRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise JobNotFoundError(f"no job {job_id} in {path.parent}") from None
    except (OSError, ValidationError) as exc:
        raise PipelineError(f"{path}: unreadable job record: {exc}") from exc


def list_records(settings: Settings, limit: int = 20) -> list[JobRecord]:
    """The newest ``limit`` jobs, newest first (unreadable records are skipped with a warning)."""
    folder = jobs_dir(settings)
    records = []
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            records.append(JobRecord.model_validate_json(path.read_bytes()))
        except (OSError, ValidationError) as exc:
            logger.warning("%s: unreadable job record skipped (%s)", path, exc)
    records.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return [check_alive(settings, r) for r in records[:limit]]


def log_tail(settings: Settings, job_id: str, lines: int = 50) -> list[str]:
    """The last ``lines`` lines of the job's log (empty before it wrote any)."""
    try:
        with open(log_path(settings, job_id), encoding="utf-8", errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=lines)]
    except FileNotFoundError:
        return []


def new_job(settings: Settings, request: JobRequest) -> JobRecord:
    """Validate ``request`` and write its record, queued. :class:`UsageError` on bad input."""
    from pipeline.forecasters import parse_models

    if request.series:
        series = [SeriesId.parse(name).name for name in request.series]
    else:
        series = [s.name for s in settings.series()]
    models = parse_models(",".join(request.models)) if request.models else None
    if request.models is not None and not request.models:
        raise UsageError("models: give at least one model, or leave it out for the defaults")
    if request.kind == "refresh" and request.models:
        raise UsageError("models: a refresh fits nothing; leave models out")
    record = JobRecord(
        id=uuid.uuid4().hex[:12],
        kind=request.kind,
        series=series,
        models=models,
        wait=request.wait,
        created_at=datetime.now(UTC),
        reason="starting its process",
    )
    write_record(settings, record)
    return record


# -- the job processes, seen from the API ------------------------------------------------------
_children: dict[str, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


def spawn(settings: Settings, record: JobRecord) -> subprocess.Popen[bytes]:
    """Start the job's process (its own session, output into its log) and reap it when done."""
    env = {
        **os.environ,
        "MODELS_DIR": str(Path(settings.models_dir).resolve()),
        "DATA_DIR": str(Path(settings.data_dir).resolve()),
        "REPORTS_DIR": str(Path(settings.reports_dir).resolve()),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the API workers' metrics folder is not its own
    # The job imports this very package, wherever the API was started from.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    log = open(log_path(settings, record.id), "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.scheduling.job_runner", record.id],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()
    with _children_lock:
        _children[record.id] = proc
    threading.Thread(target=proc.wait, name=f"job-{record.id}", daemon=True).start()
    logger.info("job %s (%s) started as process %d", record.id, record.kind, proc.pid)
    return proc


def _process_alive(settings: Settings, record: JobRecord) -> bool | None:
    """Whether the job's process runs: True, False, or None when it cannot be told yet."""
    with _children_lock:
        child = _children.get(record.id)
    if child is not None:
        return child.poll() is None
    if record.pid is None:
        age = (datetime.now(UTC) - record.created_at).total_seconds()
        return None if age < START_GRACE_SECONDS else False
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(record.pid, 0)
        except ProcessLookupError:
            return False
        return True
    return record.id.encode() in cmdline  # not a later process that reused the pid


def check_alive(settings: Settings, record: JobRecord) -> JobRecord:
    """``record``, marked failed when its process is gone without recording an outcome."""
    if not record.final and cancel_marker(settings, record.id).exists():
        record.cancel_requested = True
    if record.final or _process_alive(settings, record) is not False:
        return record
    fresh = read_record(settings, record.id)  # it may have finished while we looked
    if fresh.final:
        return fresh
    with _children_lock:
        child = _children.get(record.id)
    code = child.returncode if child is not None else None
    fresh.state, fresh.exit_code = "failed", code
    fresh.reason = "the job's process ended without recording an outcome" + (
        f" (exit status {code})" if code is not None else " (killed, or the machine restarted)"
    )
    fresh.ended_at = datetime.now(UTC)
    write_record(settings, fresh)
    logger.error("job %s: %s", fresh.id, fresh.reason)
    return fresh


def get_job(settings: Settings, job_id: str) -> JobRecord:
    return check_alive(settings, read_record(settings, job_id))


def cancel(settings: Settings, job_id: str) -> JobRecord:
    """Ask a queued or running job to stop; :class:`PipelineError` when it already ended."""
    record = get_job(settings, job_id)
    if record.final:
        raise PipelineError(f"job {job_id} already ended ({record.state}): nothing to cancel")
    cancel_marker(settings, job_id).touch()
    pid = record.pid
    with _children_lock:
        child = _children.get(job_id)
    if child is not None:
        pid = child.pid
    if pid is not None:  # the job's process only: its stage's own workers finish the stage
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    record.cancel_requested = True
    return record
