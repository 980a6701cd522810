"""The run history (one JSON line per cycle) and the lock that keeps cycles apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.scheduling.history import (
    EXIT_LOCKED,
    LOCK_FILE,
    CycleRecord,
    LockBusyError,
    SeriesOutcome,
    append_history,
    cycle_lock,
    history_path,
    last_success,
    read_history,
)
from tests.helpers.paths import ROOT


def record(run_id: str, status: str, ended_at: str = "2026-11-21T02:01:00+00:00") -> CycleRecord:
    rec = CycleRecord(run_id=run_id, started_at="2026-11-21T02:00:00+00:00", status=status)
    rec.ended_at = ended_at
    rec.series.append(SeriesOutcome("bitcoin-usd-1d", "promoted", "passed", candidate="naive"))
    return rec


def test_history_is_one_json_line_per_cycle_oldest_first(settings: Settings) -> None:
    append_history(settings, record("a", "success"))
    append_history(settings, record("b", "failure"))

    lines = history_path(settings).read_text("utf-8").splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["a", "b"]
    first = read_history(settings)[0]
    assert first["status"] == "success"
    assert first["series"][0] == {
        "series": "bitcoin-usd-1d",
        "status": "promoted",
        "reason": "passed",
        "stage": None,
        "candidate": "naive",
        "version": None,
        "metrics": {},
        "serving": None,
        "seconds": 0.0,
        "ingest_wait_seconds": 0.0,
    }
    assert [r["run_id"] for r in read_history(settings, limit=1)] == ["b"]


def test_no_history_yet(settings: Settings) -> None:
    assert read_history(settings) == []
    assert last_success(settings) is None


def test_history_survives_a_damaged_line(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    append_history(settings, record("a", "success"))
    with open(history_path(settings), "a", encoding="utf-8") as fh:
        fh.write('{"truncated": \n')
    assert [r["run_id"] for r in read_history(settings)] == ["a"]
    assert "runs.jsonl:2: unreadable history line skipped" in caplog.text


def test_last_success_is_the_newest_success_or_partial(settings: Settings) -> None:
    append_history(settings, record("a", "success", "2026-11-20T02:01:00+00:00"))
    append_history(settings, record("b", "partial", "2026-11-21T02:01:00+00:00"))
    append_history(settings, record("c", "failure", "2026-11-22T02:01:00+00:00"))
    assert last_success(settings) == datetime(2026, 11, 21, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["promoted", "rejected", "kept"], "success"),
        (["promoted", "failed"], "partial"),
        (["failed", "failed"], "failure"),
        (["promoted", "stopped"], "stopped"),
        ([], "success"),
    ],
)
def test_cycle_status_from_series_outcomes(statuses: list[str], expected: str) -> None:
    rec = CycleRecord(run_id="x", started_at="now")
    rec.series = [SeriesOutcome(f"s{i}", status) for i, status in enumerate(statuses)]
    assert rec.conclude() == expected == rec.status
    assert [o.series for o in rec.promoted] == [
        f"s{i}" for i, status in enumerate(statuses) if status == "promoted"
    ]


def test_lock_names_its_holder_and_is_released(settings: Settings) -> None:
    with cycle_lock(settings):
        holder = (Path(settings.models_dir) / LOCK_FILE).read_text("utf-8")
        assert holder.startswith(f"pid {os.getpid()} since ")
        with pytest.raises(LockBusyError, match=rf"held by pid {os.getpid()} since .*nothing"):
            with cycle_lock(settings):
                pass
    with cycle_lock(settings):  # released: it can be taken again
        pass
    assert LockBusyError("x").exit_code == EXIT_LOCKED == 3


def test_lock_is_held_across_processes(settings: Settings) -> None:
    code = (
        "import sys; from pipeline.config import load_settings; "
        "from pipeline.scheduling.history import LockBusyError, cycle_lock\n"
        "try:\n"
        "    with cycle_lock(load_settings()): sys.exit(0)\n"
        "except LockBusyError as exc: print(exc); sys.exit(exc.exit_code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with cycle_lock(settings):
        held = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
        )
    free = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert held.returncode == EXIT_LOCKED, held.stderr
    assert "another retraining cycle is running" in held.stdout
    assert free.returncode == 0, free.stderr


CHILD_APPEND = """
import resource, sys
from pipeline.config import get_settings
from pipeline.errors import StorageError
from pipeline.scheduling.history import CycleRecord, append_history
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    append_history(get_settings(), CycleRecord(run_id="c" * 500, started_at="now"))
except StorageError as exc:
    print(exc)
    raise SystemExit(1)
"""


def test_an_append_cut_off_by_lack_of_room_leaves_no_torn_line(settings: Settings) -> None:
    """A child whose file-size limit lets only part of the line through: the part is cut off
    again and a clear error is raised; the next append starts on its own line."""
    append_history(settings, record("a", "success"))
    path = history_path(settings)
    before = path.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MODELS_DIR": str(settings.models_dir)}
    child = subprocess.run(
        [sys.executable, "-c", CHILD_APPEND, str(len(before) + 100)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert child.returncode == 1, child.stderr
    assert "cannot write" in child.stdout and "nothing was replaced" in child.stdout
    assert path.read_bytes() == before
    append_history(settings, record("b", "success"))
    assert [r["run_id"] for r in read_history(settings)] == ["a", "b"]
