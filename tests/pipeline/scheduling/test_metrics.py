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
from pipeline.scheduling.history import (
    CycleRecord,
    RefreshRecord,
    SeriesOutcome,
    append_history,
)
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


ZERO_VERSIONS = {"issued": 0, "current": 0, "not_updated": 0, "refused": 0, "failed": 0}


def refresh(
    status: str, ended: datetime, seconds: float, versions: dict[str, int], **series: str
) -> RefreshRecord:
    """A refresh record; ``series`` maps series names (``_`` for ``-``) to their status."""
    return RefreshRecord(
        run_id=f"refresh-{status}",
        started_at=(ended - timedelta(seconds=seconds)).isoformat(),
        ended_at=ended.isoformat(),
        status=status,
        duration_seconds=seconds,
        versions={**ZERO_VERSIONS, **versions},
        series=[{"series": n.replace("_", "-"), "status": st} for n, st in series.items()],
    )


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
        "refresh_runs": "counter",
        "refresh_interval_seconds": "gauge",
        "ingest_circuit_state": "gauge",
        "ingest_circuit_failures": "gauge",
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
        # no refresh yet: zero counts, and the cadence of every series
        **{("refresh_runs_total", (("outcome", o),)): 0 for o in ("failure", "partial", "success")},
        **{
            ("refresh_interval_seconds", (("series", f"bitcoin-usd-{freq}"),)): seconds
            for freq, seconds in (("1d", 86400), ("1h", 3600), ("4h", 3600))
        },
        # no circuit-breaker state recorded: closed
        ("ingest_circuit_state", (("provider", "coingecko"),)): 0,
        ("ingest_circuit_failures", (("provider", "coingecko"),)): 0,
    }


def test_refresh_metrics_from_the_refresh_records(three_series: Settings) -> None:
    settings = three_series
    append_history(settings, cycle("success", NOW - timedelta(hours=30), 50.0))
    append_history(
        settings,
        refresh(
            "success",
            NOW - timedelta(hours=3),
            4.0,
            {"issued": 30},
            bitcoin_usd_1h="refreshed",
            bitcoin_usd_4h="refreshed",
            bitcoin_usd_1d="refreshed",
            ethereum_usd_1d="refreshed",
        ),  # fmt: skip
    )
    append_history(
        settings,
        refresh(
            "partial",
            NOW - timedelta(hours=2),
            3.5,
            {"issued": 10, "refused": 10},
            bitcoin_usd_1h="refreshed",
            bitcoin_usd_4h="partial",
            bitcoin_usd_1d="current",
        ),  # fmt: skip
    )
    append_history(
        settings,
        refresh(
            "failure",
            NOW - timedelta(hours=1),
            2.25,
            {"current": 1, "not_updated": 2, "refused": 3, "failed": 4},
            bitcoin_usd_1h="failed",
            bitcoin_usd_4h="failed",
            bitcoin_usd_1d="partial",
        ),  # fmt: skip
    )

    types, samples = parse(metrics_text(settings, NOW))

    refresh_types = {name: kind for name, kind in types.items() if name.startswith("refresh_")}
    assert refresh_types == {
        "refresh_runs": "counter",
        "refresh_last_run_timestamp_seconds": "gauge",
        "refresh_last_run_duration_seconds": "gauge",
        "refresh_last_success_timestamp_seconds": "gauge",
        "refresh_versions": "gauge",
        "refresh_interval_seconds": "gauge",
    }
    refresh_samples = {k: v for k, v in samples.items() if k[0].startswith("refresh_")}
    hours_ago = {h: (NOW - timedelta(hours=h)).timestamp() for h in (1, 2, 3)}
    assert refresh_samples == {
        ("refresh_runs_total", (("outcome", "failure"),)): 1,
        ("refresh_runs_total", (("outcome", "partial"),)): 1,
        ("refresh_runs_total", (("outcome", "success"),)): 1,
        ("refresh_last_run_timestamp_seconds", ()): hours_ago[1],
        ("refresh_last_run_duration_seconds", ()): 2.25,
        # refreshed or current (nothing new) is a success of that series; ethereum is no
        # longer configured, so it is left out
        ("refresh_last_success_timestamp_seconds", (("series", "bitcoin-usd-1d"),)): hours_ago[2],
        ("refresh_last_success_timestamp_seconds", (("series", "bitcoin-usd-1h"),)): hours_ago[2],
        ("refresh_last_success_timestamp_seconds", (("series", "bitcoin-usd-4h"),)): hours_ago[3],
        # the versions of the last refresh only
        ("refresh_versions", (("status", "current"),)): 1,
        ("refresh_versions", (("status", "failed"),)): 4,
        ("refresh_versions", (("status", "issued"),)): 0,
        ("refresh_versions", (("status", "not_updated"),)): 2,
        ("refresh_versions", (("status", "refused"),)): 3,
        ("refresh_interval_seconds", (("series", "bitcoin-usd-1d"),)): 86400,
        ("refresh_interval_seconds", (("series", "bitcoin-usd-1h"),)): 3600,
        ("refresh_interval_seconds", (("series", "bitcoin-usd-4h"),)): 3600,
    }
    # the refreshes are not cycles: the retraining metrics still see the one cycle
    assert samples[("retrain_runs_total", (("outcome", "success"),))] == 1
    assert samples[("retrain_last_run_duration_seconds", ())] == 50.0


def test_refresh_interval_follows_the_settings(three_series: Settings) -> None:
    hourly_off = three_series.model_copy(update={"refresh_minutes_1h": 0})
    _, samples = parse(metrics_text(hourly_off, NOW))
    assert {k[1]: v for k, v in samples.items() if k[0] == "refresh_interval_seconds"} == {
        (("series", "bitcoin-usd-4h"),): 3600,
        (("series", "bitcoin-usd-1d"),): 86400,
    }
    disabled = three_series.model_copy(update={"refresh_enabled": False})
    types, _ = parse(metrics_text(disabled, NOW))
    assert "refresh_interval_seconds" not in types
    assert "refresh_runs" in types  # the counters are always there


def test_a_refresh_without_successes_or_version_counts_exports_neither(
    settings: Settings,
) -> None:
    record = refresh("failure", NOW, 1.0, {}, bitcoin_usd_1d="failed")
    record.versions = {}  # a record written before the counts were kept
    append_history(settings, record)
    types, samples = parse(metrics_text(settings, NOW))
    assert "refresh_versions" not in types
    assert "refresh_last_success_timestamp_seconds" not in types
    assert samples[("refresh_last_run_timestamp_seconds", ())] == NOW.timestamp()
    assert samples[("refresh_runs_total", (("outcome", "failure"),))] == 1


def test_before_any_cycle_only_the_counters_and_the_refresh_cadence_are_exported(
    settings: Settings,
) -> None:
    types, samples = parse(metrics_text(settings, NOW))
    assert types == {
        "retrain_runs": "counter",
        "retrain_promotions": "counter",
        "refresh_runs": "counter",
        "refresh_interval_seconds": "gauge",
        "ingest_circuit_state": "gauge",
        "ingest_circuit_failures": "gauge",
    }
    interval = samples.pop(("refresh_interval_seconds", (("series", "bitcoin-usd-1d"),)))
    assert interval == 86400
    assert set(samples.values()) == {0}
    # four cycle outcomes, one series, three refresh outcomes, a closed circuit, no failures
    assert len(samples) == 10


def test_data_ages_skip_unreadable_meta_and_read_naive_times_as_utc(settings: Settings) -> None:
    assert data_ages(settings, NOW) == {}
    write_raw_meta(settings, "bitcoin-usd-1d", "not a time")
    assert data_ages(settings, NOW) == {}
    write_raw_meta(settings, "bitcoin-usd-1d", "2026-11-21T10:00:00")
    assert data_ages(settings, NOW) == {"bitcoin-usd-1d": 7200.0}


def test_textfile_is_written_whole_and_passes_promtool(three_series: Settings) -> None:
    append_history(three_series, cycle("success", NOW, 3.0, "bitcoin-usd-1h"))
    append_history(
        three_series,
        refresh(
            "partial",
            NOW,
            1.5,
            {"issued": 2, "refused": 1},
            bitcoin_usd_1h="refreshed",
            bitcoin_usd_4h="partial",
        ),  # fmt: skip
    )
    path = write_metrics_file(three_series)

    assert path == Path(three_series.models_dir) / METRICS_FILE
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(METRICS_FILE)] == [
        METRICS_FILE
    ]
    _, samples = parse(path.read_text("utf-8"))
    assert samples[("retrain_promotions_total", (("series", "bitcoin-usd-1h"),))] == 1
    assert samples[("retrain_last_success_timestamp_seconds", ())] == NOW.timestamp()
    assert samples[("refresh_versions", (("status", "refused"),))] == 1
    assert samples[("refresh_last_success_timestamp_seconds", (("series", "bitcoin-usd-1h"),))] == (
        NOW.timestamp()
    )

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
