"""The scheduler's refresh job: slots, the lock, the run history, alerts, the API reload, the
``--refresh-once`` command and the long-running loop."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import retrain_scheduler
from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from pipeline.config import Settings, load_settings
from pipeline.refresh.stage import default_ingest, default_process
from pipeline.scheduling.cycle import Stages
from pipeline.scheduling.history import cycle_lock, last_success, read_history
from pipeline.scheduling.metrics import METRICS_FILE
from pipeline.scheduling.refresh_job import (
    BUSY_RETRY,
    RefreshJob,
    last_slot,
    refresh_plan,
    run_refresh,
)
from pipeline.scheduling.service import Options, run, serve
from pipeline.series import SeriesId
from tests.helpers.refresh import HOURLY, HourlyFeed, feed_settings

NOW = datetime(2026, 11, 21, 12, 2, tzinfo=UTC)
DAILY = SeriesId("bitcoin", "usd", "1d")


def stages() -> Stages:
    def no_training(*args: Any) -> Any:
        raise AssertionError("a refresh never trains")

    return Stages(ingest=default_ingest, process=default_process, train=no_training)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize(
    ("now", "every", "expected"),
    [
        ("2026-11-21T12:02:00", timedelta(hours=1), "2026-11-21T12:02:00"),
        ("2026-11-21T12:01:59", timedelta(hours=1), "2026-11-21T11:02:00"),
        ("2026-11-21T12:30:00", timedelta(days=1), "2026-11-21T00:02:00"),
        ("2026-11-21T00:01:00", timedelta(days=1), "2026-11-20T00:02:00"),
    ],
)
def test_slots_are_counted_from_midnight_utc_plus_the_offset(
    now: str, every: timedelta, expected: str
) -> None:
    when = datetime.fromisoformat(now).replace(tzinfo=UTC)
    slot = last_slot(when, every, timedelta(minutes=2))
    assert slot == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_hourly_series_are_due_every_hour_and_daily_ones_after_midnight() -> None:
    settings = load_settings(frequencies=["1h", "4h", "1d"])
    clock = Clock(NOW)
    job = RefreshJob(settings, stages=stages(), clock=clock, catchup=False)
    assert job.due(NOW) == []
    assert job.seconds_until_next() == 3600.0
    hourly = [SeriesId("bitcoin", "usd", "1h"), SeriesId("bitcoin", "usd", "4h")]
    assert job.due(NOW + timedelta(hours=1)) == hourly
    assert job.due(datetime(2026, 11, 22, 0, 2, tzinfo=UTC)) == [*hourly, DAILY]
    off = settings.model_copy(update={"refresh_minutes_4h": 0})
    assert RefreshJob(off, clock=clock).due(NOW) == [hourly[0], DAILY]  # catch-up: all now


def test_a_refresh_is_recorded_in_the_history_and_the_api_reloads(
    feed: HourlyFeed,
    hourly: Settings,
    trained: dict[str, ArtifactMetadata],
    recorder: tuple[str, Any],
) -> None:
    url, handler = recorder
    wired = feed_settings(feed, api_url=url, admin_api_key="k")
    feed.append()
    record = run_refresh(wired, clock=lambda: NOW)
    assert (record.kind, record.status, record.issued, record.reloaded_api) == (
        "refresh", "success", 2, True,
    )  # fmt: skip
    assert [path for path, _, _ in handler.received] == ["/model/reload"]
    (line,) = read_history(hourly, kind="refresh")
    assert line["series"] == [
        {"series": "bitcoin-usd-1h", "status": "refreshed", "stage": None,
         "reason": "2 issued", "issued": 2, "seconds": line["series"][0]["seconds"],
         "versions": []},
    ]  # fmt: skip
    assert (line["started_at"], line["status"]) == (NOW.isoformat(), "success")
    assert line["versions"] == {
        "issued": 2, "current": 0, "not_updated": 0, "refused": 0, "failed": 0,
    }  # fmt: skip
    # the metrics textfile is rewritten after the refresh
    prom = (Path(hourly.models_dir) / METRICS_FILE).read_text("utf-8")
    assert 'refresh_runs_total{outcome="success"} 1.0' in prom
    assert 'refresh_versions{status="issued"} 2.0' in prom
    assert read_history(hourly) == [] and last_success(hourly) is None  # not a cycle
    # nothing new: recorded, no reload
    assert run_refresh(wired, clock=lambda: NOW).reloaded_api is None
    assert len(handler.received) == 1


def test_a_failed_refresh_is_recorded_and_alerted(
    feed: HourlyFeed,
    hourly: Settings,
    trained: dict[str, ArtifactMetadata],
    recorder: tuple[str, Any],
) -> None:
    url, handler = recorder
    hooked = hourly.model_copy(update={"alert_webhook_url": SecretStr(url + "/hook")})
    feed.append(price="")
    record = run_refresh(hooked, clock=lambda: NOW)
    assert (record.status, record.issued, record.reloaded_api) == ("failure", 0, None)
    ((path, _, body),) = handler.received
    reason = (
        "bitcoin-usd-1h: ingest: export.csv (coingecko-export): rejected, missing (NaN) price "
        "nan at 2026-11-21T12:00:00Z"
    )
    assert path == "/hook"
    assert json.loads(body) == {
        "source": "retrain_scheduler",
        "kind": "refresh",
        "run_id": record.run_id,
        "status": "failure",
        "problems": [{"series": "bitcoin-usd-1h", "status": "failed", "reason": reason}],
    }
    (line,) = read_history(hourly, kind="refresh")
    assert (line["status"], line["series"][0]["stage"]) == ("failure", "ingest")
    assert set(line["versions"].values()) == {0}  # no version was touched
    prom = (Path(hourly.models_dir) / METRICS_FILE).read_text("utf-8")
    assert 'refresh_runs_total{outcome="failure"} 1.0' in prom
    store = ArtifactStore(hourly.models_dir)
    assert store.latest_issue(HOURLY, "naive", trained["naive"].version) is None


def test_the_plan_shows_each_series_cadence_and_next_slot() -> None:
    settings = load_settings(frequencies=["1h", "4h", "1d"], refresh_minutes_4h=0)
    assert refresh_plan(settings, NOW, catchup=False) == {
        "enabled": True,
        "catchup_now": False,
        "offset_seconds": 120.0,
        "steps": ["ingest", "process", "update", "issue", "reload API"],
        "series": {
            "bitcoin-usd-1h": {"schedule": "every 60 minutes",
                               "next_run": "2026-11-21T13:02:00+00:00"},
            "bitcoin-usd-4h": {"schedule": "off", "next_run": None},
            "bitcoin-usd-1d": {"schedule": "every 1440 minutes",
                               "next_run": "2026-11-22T00:02:00+00:00"},
        },
    }  # fmt: skip
    assert refresh_plan(settings, NOW - timedelta(seconds=1), catchup=True)["series"][
        "bitcoin-usd-1h"
    ] == {"schedule": "every 60 minutes", "next_run": NOW.isoformat()}
    every_off = settings.model_copy(update={"refresh_minutes_1h": 0, "refresh_minutes_1d": 0})
    assert refresh_plan(every_off, NOW, catchup=True)["catchup_now"] is False  # nothing to do
    disabled = settings.model_copy(update={"refresh_enabled": False})
    assert refresh_plan(disabled, NOW, catchup=True) == {"enabled": False}


def test_a_held_lock_skips_the_refresh_once_logged_and_retries_later(
    hourly: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(NOW)
    job = RefreshJob(hourly, stages=stages(), clock=clock)
    with cycle_lock(hourly):
        assert job.run_pending() is None
        clock.now = NOW + timedelta(seconds=1)
        assert job.run_pending() is None  # waiting for the retry time: not even tried
        assert job.seconds_until_next() == (BUSY_RETRY - timedelta(seconds=1)).total_seconds()
    assert caplog.text.count("refresh skipped, trying again shortly: another retraining") == 1
    clock.now = NOW + BUSY_RETRY
    record = job.run_pending()
    assert record is not None and record.status == "success"  # nothing trained: all current
    assert job.due(clock.now) == [] and job.run_pending() is None
    assert len(read_history(hourly, kind="refresh")) == 1


def test_a_running_refresh_keeps_a_cycle_out(hourly: Settings) -> None:
    with cycle_lock(hourly, job="refresh"):
        with pytest.raises(Exception, match=r"another refresh is running .*\(refresh\)\)"):
            run_refresh(hourly)


def test_refresh_once_prints_each_series_and_exits_with_the_outcome(
    feed: HourlyFeed, hourly: Settings, trained: dict[str, ArtifactMetadata]
) -> None:
    feed.append()
    out = io.StringIO()
    assert run(hourly, Options(command="refresh-once"), out) == 0
    assert out.getvalue() == "bitcoin-usd-1h: refreshed - 2 issued\n"
    feed.append(1, skip=5)
    out = io.StringIO()
    assert run(hourly, Options(command="refresh-once"), out) == 1
    assert out.getvalue().startswith("bitcoin-usd-1h: failed - bitcoin-usd-1h/naive/")
    with cycle_lock(hourly):
        assert run(hourly, Options(command="refresh-once"), io.StringIO()) == 3


def test_the_refresh_once_flag(
    feed: HourlyFeed,
    trained: dict[str, ArtifactMetadata],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_root_logger: None,
) -> None:
    monkeypatch.setenv("SOURCE", f"csv:{feed.path}")
    monkeypatch.setenv("FREQUENCIES", "1h")
    feed.append()
    assert retrain_scheduler.main(["--refresh-once"]) == 0
    assert capsys.readouterr().out == "bitcoin-usd-1h: refreshed - 2 issued\n"
    with pytest.raises(SystemExit):
        retrain_scheduler.main(["--refresh-once", "--once"])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_loop_refreshes_at_start_up_between_cycles(
    feed: HourlyFeed, hourly: Settings, trained: dict[str, ArtifactMetadata]
) -> None:
    quiet = hourly.model_copy(update={"scheduler_metrics_port": 0, "retrain_catchup": False})
    feed.append()
    stop = threading.Event()
    loop = threading.Thread(target=lambda: serve(quiet, Options(), stop, stages=stages()))
    loop.start()
    try:
        wait_for(lambda: len(read_history(hourly, kind="refresh")) == 1, "the start-up refresh")
    finally:
        stop.set()
        loop.join(30)
    assert not loop.is_alive()
    assert read_history(hourly) == []  # no cycle ran
    (line,) = read_history(hourly, kind="refresh")
    assert (line["status"], line["issued"]) == ("success", 2)


def test_the_loop_without_refresh(hourly: Settings, trained: dict[str, ArtifactMetadata]) -> None:
    off = hourly.model_copy(update={"scheduler_metrics_port": 0, "refresh_enabled": False,
                                    "retrain_catchup": False})  # fmt: skip
    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)
    timer.start()
    assert serve(off, Options(), stop, stages=stages()) == 0
    timer.cancel()
    assert read_history(hourly, kind="refresh") == []
