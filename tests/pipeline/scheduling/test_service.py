"""The scheduler service: schedule arithmetic, one cycle's exit code, the plan, the history
listing, signals and the long-running loop (with its metrics endpoint)."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.scheduling.history import (
    EXIT_LOCKED,
    CycleRecord,
    SeriesOutcome,
    append_history,
    cycle_lock,
    read_history,
)
from pipeline.scheduling.service import (
    Options,
    Schedule,
    catchup_due,
    next_daily_run,
    plan,
    print_history,
    run,
    run_once,
    serve,
    stop_on_signals,
)
from pipeline.series import SeriesId
from tests.helpers.processes import free_port
from tests.helpers.scheduling import (
    FakeTrainer,
    Samples,
    fake_stages,
    good_metrics,
    metric_samples,
)

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "at", "expected"),
    [
        ("2026-11-21T01:59:00+00:00", "02:00", "2026-11-21T02:00:00+00:00"),
        ("2026-11-21T02:00:00+00:00", "02:00", "2026-11-22T02:00:00+00:00"),
        ("2026-11-21T23:30:00+00:00", "02:00", "2026-11-22T02:00:00+00:00"),
        ("2026-12-31T20:00:00-05:00", "02:00", "2027-01-01T02:00:00+00:00"),
        ("2026-12-31T22:00:00-05:00", "02:00", "2027-01-02T02:00:00+00:00"),
    ],
)
def test_next_daily_run(now: str, at: str, expected: str) -> None:
    assert next_daily_run(datetime.fromisoformat(now), at) == datetime.fromisoformat(expected)


def test_catchup_after_downtime() -> None:
    day = timedelta(days=1)
    assert catchup_due(None, NOW, day)
    assert catchup_due(NOW - timedelta(hours=25), NOW, day)
    assert not catchup_due(NOW - timedelta(hours=23), NOW, day)


@pytest.mark.parametrize(
    ("every", "expected", "interval", "described"),
    [
        (None, Schedule("days", 1), timedelta(days=1), "daily at 02:00 UTC"),
        (["6", "hours"], Schedule("hours", 6), timedelta(hours=6), "every 6 hours"),
        (["1", "Minute"], Schedule("minutes", 1), timedelta(minutes=1), "every 1 minutes"),
    ],
)
def test_schedule_from_every(
    every: list[str] | None, expected: Schedule, interval: timedelta, described: str
) -> None:
    parsed = Schedule.parse(every)
    assert parsed == expected
    assert parsed.interval == interval
    assert parsed.describe("02:00") == described


@pytest.mark.parametrize("every", [["0", "hours"], ["2", "days"], ["-1", "hours"], ["x", "hours"]])
def test_bad_every_is_a_usage_error(every: list[str]) -> None:
    with pytest.raises(UsageError, match="--every takes a positive number and 'minutes' or"):
        Schedule.parse(every)


def test_next_run_of_an_interval_schedule() -> None:
    assert Schedule("hours", 6).next_run(NOW, "02:00") == NOW + timedelta(hours=6)
    assert Schedule().next_run(NOW, "02:00") == datetime(2026, 11, 22, 2, tzinfo=UTC)


def test_plan(settings: Settings) -> None:
    options = Options(command="dry-run", schedule=Schedule("hours", 6), models=["naive"])
    assert plan(settings, options, NOW) == {
        "series": ["bitcoin-usd-1d"],
        "models": ["naive"],
        "schedule": "every 6 hours",
        "next_run": "2026-11-21T18:00:00+00:00",
        "catchup_now": True,
        "stages": ["ingest", "process", "train", "gate", "promote", "reload API"],
        "runs_on": "this process",
        "lock": f"flock {settings.models_dir / '.retrain.lock'}",
        "refresh": {
            "enabled": True,
            "catchup_now": True,
            "offset_seconds": 120.0,
            "steps": ["ingest", "process", "update", "issue", "reload API"],
            "series": {
                "bitcoin-usd-1d": {
                    "schedule": "every 1440 minutes",
                    "next_run": "2026-11-22T00:02:00+00:00",
                }
            },
        },
        "models_dir": str(settings.models_dir),
        "api_url": None,
    }
    assert plan(settings, Options(catchup=False), NOW)["catchup_now"] is False
    no_catchup = settings.model_copy(update={"retrain_catchup": False})
    assert plan(no_catchup, Options(), NOW)["catchup_now"] is False


def test_recent_success_means_no_catchup(settings: Settings) -> None:
    record = CycleRecord(run_id="r", started_at=NOW.isoformat(), status="success")
    record.ended_at = (NOW - timedelta(hours=2)).isoformat()
    append_history(settings, record)
    assert plan(settings, Options(), NOW)["catchup_now"] is False
    assert plan(settings, Options(schedule=Schedule("hours", 1)), NOW)["catchup_now"] is True


def test_run_once_prints_each_series_and_exits_0(settings: Settings) -> None:
    out = io.StringIO()
    stages = fake_stages(FakeTrainer({"naive": good_metrics()}))
    assert run_once(settings, ["naive"], threading.Event(), stages=stages, out=out) == 0
    (line,) = out.getvalue().splitlines()
    assert line.startswith("bitcoin-usd-1d: promoted - passed the quality gate; naive wins")


def test_run_once_exits_1_when_a_series_failed(settings: Settings) -> None:
    def broken(series: SeriesId, s: Settings, models: Sequence[str]) -> Any:
        raise RuntimeError("boom")

    out = io.StringIO()
    assert run_once(settings, None, threading.Event(), stages=fake_stages(broken), out=out) == 1
    assert out.getvalue() == "bitcoin-usd-1d: failed - train: boom\n"


def test_run_once_exits_3_when_locked(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    trainer = FakeTrainer({"naive": good_metrics()})
    with cycle_lock(settings):
        code = run_once(settings, None, threading.Event(), stages=fake_stages(trainer))
    assert code == EXIT_LOCKED == 3
    assert trainer.calls == []
    assert "another retraining cycle is running" in caplog.text


def test_print_history(settings: Settings) -> None:
    out = io.StringIO()
    assert print_history(settings, 10, out) == 0
    assert out.getvalue().startswith("no cycles recorded yet in ")
    record = CycleRecord(run_id="abc123", started_at="2026-11-21T02:00:00+00:00")
    record.status, record.duration_seconds = "partial", 61.5
    record.series = [
        SeriesOutcome("bitcoin-usd-1d", "promoted", "passed", candidate="naive", version="v1",
                      metrics={"mase": 0.98}),
        SeriesOutcome("bitcoin-usd-1h", "failed", "ingest: boom"),
    ]  # fmt: skip
    append_history(settings, record)
    out = io.StringIO()
    assert print_history(settings, 5, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "2026-11-21T02:00:00  abc123  partial      61.5s"
    assert lines[1].split() == ["bitcoin-usd-1d", "promoted", "naive/v1", "mase=0.980", "passed"]
    assert lines[2].split() == ["bitcoin-usd-1h", "failed", "-", "mase=-", "ingest:", "boom"]


def test_run_dry_run_and_history(settings: Settings) -> None:
    out = io.StringIO()
    assert run(settings, Options(command="dry-run"), out) == 0
    assert json.loads(out.getvalue())["schedule"] == "daily at 02:00 UTC"
    out = io.StringIO()
    assert run(settings, Options(command="history"), out) == 0
    assert "no cycles recorded yet" in out.getvalue()


def test_signals_set_the_stop_event_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGTERM) is before


def scrape(port: int) -> Samples:
    return metric_samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)


def wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_loop_catches_up_serves_metrics_and_stops(settings: Settings) -> None:
    port = free_port()
    wired = settings.model_copy(update={"scheduler_metrics_port": port})
    stop = threading.Event()
    trainer = FakeTrainer({"naive": good_metrics()})
    codes: list[int] = []
    loop = threading.Thread(
        target=lambda: codes.append(
            serve(wired, Options(), stop, stages=fake_stages(trainer), metrics_addr="127.0.0.1")
        )
    )
    loop.start()
    try:
        wait_for(lambda: len(read_history(settings)) == 1, "the catch-up cycle")
        assert scrape(port)[("retrain_runs_total", (("outcome", "success"),))] == 1
        assert trainer.calls == [SeriesId("bitcoin", "usd", "1d")]
    finally:
        stop.set()
        loop.join(30)
    assert not loop.is_alive() and codes == [0]
    with pytest.raises(httpx.TransportError):  # the endpoint stopped with the loop
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_loop_without_catchup_only_writes_the_metrics_file(settings: Settings) -> None:
    stop = threading.Event()
    stop.set()  # as if SIGTERM arrived at once
    no_port = settings.model_copy(update={"scheduler_metrics_port": 0})
    trainer = FakeTrainer({"naive": good_metrics()})
    assert serve(no_port, Options(catchup=False), stop, stages=fake_stages(trainer)) == 0
    assert trainer.calls == []
    assert read_history(settings) == []
    assert (settings.models_dir / "scheduler.prom").is_file()
