"""The record of retraining cycles (``models/runs.jsonl``) and the lock that keeps them apart.

Every cycle appends one JSON line: when it ran, its outcome and, per series, what happened and
why. An exclusive OS-level lock (``models/.retrain.lock``) makes sure two cycles never overlap,
even across processes; the OS releases it if the holder crashes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pipeline.config import Settings
from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

HISTORY_FILE = "runs.jsonl"
LOCK_FILE = ".retrain.lock"


class LockBusyError(PipelineError):
    """Another retraining cycle holds the lock (exit code 3: nothing was done)."""

    exit_code = 3


#: The exit code of a cycle that found the lock held.
EXIT_LOCKED = LockBusyError.exit_code

#: Cycle outcomes: every series fine, some failed, all failed, stopped by a signal.
CYCLE_OUTCOMES: tuple[str, ...] = ("success", "partial", "failure", "stopped")
#: Series outcomes that count as the series being handled (a decision was made).
DECIDED: frozenset[str] = frozenset({"promoted", "kept", "rejected"})


@dataclass
class SeriesOutcome:
    """What one cycle did for one series."""

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
    """One cycle: its id, times, outcome and the per-series outcomes (one history line)."""

    run_id: str
    started_at: str
    ended_at: str = ""
    status: str = "running"  # one of CYCLE_OUTCOMES once the cycle ended
    duration_seconds: float = 0.0
    series: list[SeriesOutcome] = field(default_factory=list)
    reloaded_api: bool | None = None

    @property
    def promoted(self) -> list[SeriesOutcome]:
        return [o for o in self.series if o.status == "promoted"]

    def conclude(self) -> str:
        """Set and return :attr:`status` from the series outcomes."""
        statuses = {o.status for o in self.series}
        if "stopped" in statuses:
            self.status = "stopped"
        elif statuses <= DECIDED:
            self.status = "success"
        elif statuses & DECIDED:
            self.status = "partial"
        else:
            self.status = "failure"
        return self.status


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


def last_success(
    settings: Settings, history: list[dict[str, Any]] | None = None
) -> datetime | None:
    """When the last successful (or partly successful) cycle ended; ``None`` if none did."""
    for record in reversed(read_history(settings) if history is None else history):
        if record.get("status") in {"success", "partial"}:
            return datetime.fromisoformat(record["ended_at"])
    return None


@contextlib.contextmanager
def cycle_lock(settings: Settings) -> Iterator[None]:
    """An exclusive ``flock``: released by the OS even if the process crashes.

    Raises :class:`LockBusyError` naming the holder when another cycle has it.
    """
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
