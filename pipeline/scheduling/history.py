"""The record of retraining cycles and refreshes (``models/runs.jsonl``) and the lock that keeps
them apart.

Every cycle appends one JSON line: when it ran, its outcome and, per series, what happened and
why. Every scheduled refresh appends one too, marked ``"kind": "refresh"`` (a line without a
``kind`` is a cycle); readers ask for one kind. The lock (:mod:`pipeline.scheduling.lock`,
re-exported here) makes sure two cycles, or a cycle and a refresh, never overlap, even across
processes: an OS-level ``flock`` on ``models/.retrain.lock``, or a PostgreSQL advisory lock that
works across hosts when the ledger is on PostgreSQL; either is released if the holder crashes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.fileio import no_room_error
from pipeline.scheduling.lock import CYCLE as CYCLE  # re-exported: the lock's home is .lock
from pipeline.scheduling.lock import EXIT_LOCKED as EXIT_LOCKED
from pipeline.scheduling.lock import LOCK_FILE as LOCK_FILE
from pipeline.scheduling.lock import REFRESH as REFRESH
from pipeline.scheduling.lock import LockBusyError as LockBusyError
from pipeline.scheduling.lock import cycle_lock as cycle_lock

logger = logging.getLogger(__name__)

HISTORY_FILE = "runs.jsonl"

#: Cycle outcomes: every series fine, some failed, all failed, stopped by a signal.
CYCLE_OUTCOMES: tuple[str, ...] = ("success", "partial", "failure", "stopped")
#: Refresh outcomes: every series fine, some failed, all failed.
REFRESH_OUTCOMES: tuple[str, ...] = ("success", "partial", "failure")
# The kinds of history records, CYCLE and REFRESH, are defined beside the lock (it names them).
#: Series outcomes of a refresh that are fine (new issues written, or nothing new).
REFRESH_OK: frozenset[str] = frozenset({"refreshed", "current"})
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
    #: Seconds the ingest of this series' raw file waited for the CoinGecko call budget.
    ingest_wait_seconds: float = 0.0


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
    #: Where the series ran: ``local``, or the Dask cluster's scheduler address.
    executor: str = "local"
    #: Seconds every ingest of the cycle waited for the CoinGecko call budget, added up.
    ingest_wait_seconds: float = 0.0
    #: Whether the forecast ledger recorded and scored the cycle's issues (None: not tried).
    ledger_recorded: bool | None = None

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


@dataclass
class RefreshRecord:
    """One scheduled refresh (one history line of kind ``refresh``): per series, the compact
    summary of :meth:`pipeline.refresh.stage.SeriesRefresh.summary`; ``versions`` counts the
    served versions of every series by their outcome (each of
    :data:`pipeline.refresh.stage.VERSION_STATUSES`, zeros included)."""

    run_id: str
    started_at: str
    kind: str = REFRESH
    ended_at: str = ""
    status: str = "running"  # one of REFRESH_OUTCOMES once it ended
    duration_seconds: float = 0.0
    issued: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    series: list[dict[str, Any]] = field(default_factory=list)
    reloaded_api: bool | None = None
    executor: str = "local"
    ingest_wait_seconds: float = 0.0
    ledger_recorded: bool | None = None

    def conclude(self) -> str:
        """Set and return :attr:`status`: every series fine, some failed, or all failed."""
        ok = [s.get("status") in REFRESH_OK for s in self.series]
        self.status = "success" if all(ok) else ("partial" if any(ok) else "failure")
        self.issued = sum(int(s.get("issued", 0)) for s in self.series)
        return self.status


def history_path(settings: Settings) -> Path:
    return Path(settings.models_dir) / HISTORY_FILE


def append_history(settings: Settings, record: CycleRecord | RefreshRecord) -> None:
    """Append one JSON line (a single write of a whole line, then fsync).

    A write that fails part-way (disk full, file-size limit) is cut back off, so the next
    record starts on a line of its own; it raises :class:`~pipeline.errors.StorageError`.
    """
    path = history_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(asdict(record), default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:  # unbuffered: a short write is seen here, not at close
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # shrinking needs no room
            clear = no_room_error(exc, path)
            if clear is None:
                raise
            raise clear from exc
    finally:
        os.close(fd)


def read_history(
    settings: Settings, limit: int | None = None, kind: str = CYCLE
) -> list[dict[str, Any]]:
    """Records of one ``kind`` (cycles by default), oldest first; a damaged line is skipped
    with a warning."""
    path = history_path(settings)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("%s:%d: unreadable history line skipped", path, number)
            continue
        if isinstance(record, dict) and record.get("kind", CYCLE) == kind:
            records.append(record)
    return records[-limit:] if limit else records


def last_success(
    settings: Settings, history: list[dict[str, Any]] | None = None
) -> datetime | None:
    """When the last successful (or partly successful) cycle ended; ``None`` if none did."""
    for record in reversed(read_history(settings) if history is None else history):
        if record.get("status") in {"success", "partial"}:
            return datetime.fromisoformat(record["ended_at"])
    return None
