"""Job records and the job process's rules: validation, the lock, cancellation, lost processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.config import get_settings
from pipeline.errors import UsageError
from pipeline.scheduling import jobs
from pipeline.scheduling.history import EXIT_LOCKED, cycle_lock
from pipeline.scheduling.job_runner import main, run_job


def _job(**request: object) -> jobs.JobRecord:
    return jobs.new_job(get_settings(), jobs.JobRequest.model_validate(request))


def test_a_new_job_is_queued_with_its_series_and_models() -> None:
    record = _job(kind="retrain", models=["naive", "drift"])
    assert record.state == "queued" and record.series == ["bitcoin-usd-1d", "bitcoin-usd-1h"]
    assert record.models == ["naive", "drift"]
    stored = json.loads(jobs.record_path(get_settings(), record.id).read_text())
    assert stored["state"] == "queued" and stored["kind"] == "retrain"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"kind": "retrain", "series": ["bitcoin-usd-2h"]}, "unknown frequency '2h'"),
        ({"kind": "retrain", "models": ["nope"]}, "unknown model 'nope'"),
        ({"kind": "refresh", "models": ["naive"]}, "a refresh fits nothing"),
    ],
)
def test_bad_requests_are_usage_errors(request_: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _job(**request_)
    assert jobs.list_records(get_settings()) == []


def test_a_job_that_may_not_wait_is_refused_while_the_lock_is_held() -> None:
    settings = get_settings()
    record = _job(kind="retrain", series=["bitcoin-usd-1d"], wait=False)
    with cycle_lock(settings):
        code = run_job(settings, record.id, threading.Event())
    assert code == EXIT_LOCKED
    done = jobs.read_record(settings, record.id)
    assert (done.state, done.exit_code) == ("refused", EXIT_LOCKED)
    assert "another retraining cycle is running" in done.reason
    assert done.started_at is None and done.ended_at is not None


def test_a_waiting_job_says_why_and_ends_cancelled_when_stopped() -> None:
    settings = get_settings()
    record = _job(kind="refresh")
    stop = threading.Event()
    seen: list[str] = []

    def wait_once(timeout: float | None = None) -> bool:
        seen.append(jobs.read_record(settings, record.id).reason)
        stop.set()
        return True

    stop.wait = wait_once  # type: ignore[method-assign]
    with cycle_lock(settings):
        assert run_job(settings, record.id, stop) == 1
    assert seen and seen[0].startswith("waiting for the lock: another retraining cycle")
    done = jobs.read_record(settings, record.id)
    assert (done.state, done.reason) == ("cancelled", "cancelled before it started")


def test_a_cancel_marker_stops_a_job_before_it_starts() -> None:
    settings = get_settings()
    record = _job(kind="backtest")
    jobs.cancel_marker(settings, record.id).touch()
    assert run_job(settings, record.id, threading.Event()) == 1
    done = jobs.read_record(settings, record.id)
    assert done.state == "cancelled" and done.cancel_requested


def test_a_job_whose_process_is_gone_is_marked_failed() -> None:
    settings = get_settings()
    record = _job(kind="refresh")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    record.pid = int(gone.stdout)
    jobs.write_record(settings, record)
    lost = jobs.get_job(settings, record.id)
    assert lost.state == "failed" and "ended without recording an outcome" in lost.reason
    assert jobs.read_record(settings, record.id).state == "failed"  # written down


def test_a_job_without_a_process_gets_a_grace_period() -> None:
    settings = get_settings()
    record = _job(kind="refresh")
    assert jobs.get_job(settings, record.id).state == "queued"
    record.created_at = datetime.now(UTC) - timedelta(seconds=jobs.START_GRACE_SECONDS + 1)
    jobs.write_record(settings, record)
    assert jobs.get_job(settings, record.id).state == "failed"


def test_records_list_newest_first_and_logs_have_a_tail() -> None:
    settings = get_settings()
    first, second = _job(kind="refresh"), _job(kind="backtest")
    assert [r.id for r in jobs.list_records(settings)] == [second.id, first.id]
    assert [r.id for r in jobs.list_records(settings, limit=1)] == [second.id]
    jobs.log_path(settings, first.id).write_text("".join(f"line {i}\n" for i in range(100)))
    assert jobs.log_tail(settings, first.id, 3) == ["line 97", "line 98", "line 99"]
    assert jobs.log_tail(settings, second.id) == []
    with pytest.raises(jobs.JobNotFoundError, match="job ids are 12 hex digits"):
        jobs.read_record(settings, "../etc")
    with pytest.raises(jobs.JobNotFoundError, match="no job 0123456789ab"):
        jobs.get_job(settings, "0123456789ab")


@pytest.mark.usefixtures("restore_root_logger")
def test_a_finished_job_cannot_be_cancelled_or_run_again() -> None:
    settings = get_settings()
    record = _job(kind="refresh")
    record.state = "succeeded"
    jobs.write_record(settings, record)
    with pytest.raises(Exception, match="already ended \\(succeeded\\)"):
        jobs.cancel(settings, record.id)
    assert run_job(settings, record.id, threading.Event()) == 2
    assert main([]) == 2 and main(["0123456789ab"]) == 2
