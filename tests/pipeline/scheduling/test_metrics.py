"""The scheduler's metrics: names, labels and values from the history and raw files, the
textfile, promtool's verdict and the HTTP endpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import Settings, load_settings
from pipeline.scheduling.history import CycleRecord, SeriesOutcome, append_history
from pipeline.scheduling.metrics import (
    METRICS_FILE,
    data_ages,
    metrics_text,
    serve_metrics,
    write_metrics_file,
)
from tests.helpers.processes import free_port
from tests.helpers.scheduling import Samples, metric_samples

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """({family name: type}, {(sample name, sorted labels): value})."""
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    return types, metric_samples(text)


def cycle(status: str, ended: datetime, seconds: float, *promoted: str) -> CycleRecord:
    record = CycleRecord(
        run_id=status,
        started_at=(ended - timedelta(seconds=seconds)).isoformat(),
        ended_at=ended.isoformat(),
        status=status,
        duration_seconds=seconds,
    )
    record.series = [SeriesOutcome(name, "promoted") for name in promoted]
    record.series.append(SeriesOutcome("bitcoin-usd-4h", "failed", "ingest: boom"))
    return record


def write_raw_meta(settings: Settings, name: str, last_ds: str) -> None:
    raw = Path(settings.data_dir) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{name}.meta.json").write_text(json.dumps({"last_ds": last_ds}), "utf-8")


@pytest.fixture
def three_series() -> Settings:
    return load_settings(coins=["bitcoin"], frequencies=["1d", "1h", "4h"])


def test_metrics_from_history_and_raw_files(three_series: Settings) -> None:
    settings = three_series
    append_history(settings, cycle("success", NOW - timedelta(hours=30), 50.0, "bitcoin-usd-1d"))
    append_history(settings, cycle("partial", NOW - timedelta(hours=6), 70.5, "bitcoin-usd-1d"))
    append_history(settings, cycle("failure", NOW - timedelta(hours=1), 12.25))
    write_raw_meta(settings, "bitcoin-usd-1d", "2026-11-20T00:00:00Z")
    write_raw_meta(settings, "bitcoin-usd-1h", "2026-11-21T11:00:00Z")

    types, samples = parse(metrics_text(settings, NOW))

    assert types == {
        "retrain_runs": "counter",
        "retrain_promotions": "counter",
        "retrain_last_success_timestamp_seconds": "gauge",
        "retrain_last_run_duration_seconds": "gauge",
        "retrain_data_age_seconds": "gauge",
    }
    assert samples == {
        ("retrain_runs_total", (("outcome", "failure"),)): 1,
        ("retrain_runs_total", (("outcome", "partial"),)): 1,
        ("retrain_runs_total", (("outcome", "stopped"),)): 0,
        ("retrain_runs_total", (("outcome", "success"),)): 1,
        ("retrain_promotions_total", (("series", "bitcoin-usd-1d"),)): 2,
        ("retrain_promotions_total", (("series", "bitcoin-usd-1h"),)): 0,
        ("retrain_promotions_total", (("series", "bitcoin-usd-4h"),)): 0,
        # the partial cycle 6 h ago is the last (partly) successful one
        ("retrain_last_success_timestamp_seconds", ()): (NOW - timedelta(hours=6)).timestamp(),
        ("retrain_last_run_duration_seconds", ()): 12.25,
        ("retrain_data_age_seconds", (("series", "bitcoin-usd-1d"),)): 36 * 3600,
        ("retrain_data_age_seconds", (("series", "bitcoin-usd-1h"),)): 3600,
        # 4h is built from the hourly file, so it is as old as that file
        ("retrain_data_age_seconds", (("series", "bitcoin-usd-4h"),)): 3600,
    }


def test_before_any_cycle_only_the_counters_are_exported(settings: Settings) -> None:
    types, samples = parse(metrics_text(settings, NOW))
    assert types == {"retrain_runs": "counter", "retrain_promotions": "counter"}
    assert set(samples.values()) == {0}
    assert len(samples) == 5  # four outcomes, one series


def test_data_ages_skip_unreadable_meta_and_read_naive_times_as_utc(settings: Settings) -> None:
    assert data_ages(settings, NOW) == {}
    write_raw_meta(settings, "bitcoin-usd-1d", "not a time")
    assert data_ages(settings, NOW) == {}
    write_raw_meta(settings, "bitcoin-usd-1d", "2026-11-21T10:00:00")
    assert data_ages(settings, NOW) == {"bitcoin-usd-1d": 7200.0}


def test_textfile_is_written_whole_and_passes_promtool(three_series: Settings) -> None:
    append_history(three_series, cycle("success", NOW, 3.0, "bitcoin-usd-1h"))
    path = write_metrics_file(three_series)

    assert path == Path(three_series.models_dir) / METRICS_FILE
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(METRICS_FILE)] == [
        METRICS_FILE
    ]
    _, samples = parse(path.read_text("utf-8"))
    assert samples[("retrain_promotions_total", (("series", "bitcoin-usd-1h"),))] == 1
    assert samples[("retrain_last_success_timestamp_seconds", ())] == NOW.timestamp()

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: run scripts/install-promtool.sh")
    check = subprocess.run(
        [promtool, "check", "metrics"],
        input=path.read_text("utf-8"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout + check.stderr == ""  # not even a lint warning


def test_endpoint_serves_fresh_values_on_every_scrape(settings: Settings) -> None:
    port = free_port()
    server = serve_metrics(
        settings.model_copy(update={"scheduler_metrics_port": port}), "127.0.0.1"
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            first = http.get("/metrics")
            append_history(settings, cycle("success", NOW, 3.0, "bitcoin-usd-1d"))
            second = http.get("/metrics")
    finally:
        server.shutdown()
        server.server_close()

    assert first.status_code == second.status_code == 200
    assert first.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    key = ("retrain_runs_total", (("outcome", "success"),))
    assert parse(first.text)[1][key] == 0
    assert parse(second.text)[1][key] == 1
    assert "python_info" not in second.text  # only the scheduler's own metrics
