"""The retrain_scheduler.py command line, including real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import retrain_scheduler
from pipeline.config import get_settings
from pipeline.scheduling.history import (
    EXIT_LOCKED,
    CycleRecord,
    SeriesOutcome,
    append_history,
    cycle_lock,
    history_path,
    read_history,
)
from tests.helpers.processes import free_port, stop, wait_until
from tests.helpers.scheduling import metric_samples

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_prints_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert retrain_scheduler.main(["--dry-run", "--at", "03:30"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["schedule"] == "daily at 03:30 UTC"
    assert plan["next_run"].endswith("03:30:00+00:00")
    assert plan["catchup_now"] is True
    assert plan["series"] == ["bitcoin-usd-1d", "bitcoin-usd-1h"]
    refresh = plan["refresh"]
    assert (refresh["enabled"], refresh["catchup_now"]) == (True, True)
    assert {name: s["schedule"] for name, s in refresh["series"].items()} == {
        "bitcoin-usd-1d": "every 1440 minutes",
        "bitcoin-usd-1h": "every 60 minutes",
    }
    assert refresh["series"]["bitcoin-usd-1d"]["next_run"].endswith("T00:02:00+00:00")
    assert refresh["series"]["bitcoin-usd-1h"]["next_run"].endswith(":02:00+00:00")


def test_dry_run_shows_the_refresh_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFRESH_MINUTES_1H", "0")
    assert retrain_scheduler.main(["--dry-run", "--no-catchup"]) == 0
    refresh = json.loads(capsys.readouterr().out)["refresh"]
    assert refresh["catchup_now"] is False
    assert refresh["series"]["bitcoin-usd-1h"] == {"schedule": "off", "next_run": None}
    monkeypatch.setenv("REFRESH_ENABLED", "false")
    assert retrain_scheduler.main(["--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["refresh"] == {"enabled": False}


def test_dry_run_with_every(capsys: pytest.CaptureFixture[str]) -> None:
    assert retrain_scheduler.main(["--dry-run", "--every", "6", "hours"]) == 0
    assert json.loads(capsys.readouterr().out)["schedule"] == "every 6 hours"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--every", "0", "hours"], "error: --every takes a positive number"),
        (["--every", "2", "days"], "error: --every takes a positive number"),
        (["--at", "25:00"], "error: invalid setting(s): RETRAIN_AT"),
        (["--once", "--models", "nope"], "error: unknown model 'nope'"),
    ],
)
def test_bad_usage_exits_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert retrain_scheduler.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--once", "--dry-run"], ["--at", "03:00", "--every", "1", "hours"], ["--bogus"]]
)
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        retrain_scheduler.main(argv)
    assert exited.value.code == 2
    assert "usage: retrain_scheduler.py" in capsys.readouterr().err


def test_history_when_empty(capsys: pytest.CaptureFixture[str]) -> None:
    assert retrain_scheduler.main(["--history"]) == 0
    assert "no cycles recorded yet" in capsys.readouterr().out


def test_history_lists_cycles(capsys: pytest.CaptureFixture[str]) -> None:
    settings = get_settings()
    record = CycleRecord(run_id="abc123", started_at="2026-11-21T02:00:00+00:00")
    record.status, record.ended_at = "success", "2026-11-21T02:01:00+00:00"
    record.series.append(
        SeriesOutcome(
            "bitcoin-usd-1d",
            "promoted",
            "passed",
            candidate="naive",
            version="v1",
            metrics={"mase": 0.98},
        )
    )
    append_history(settings, record)
    assert retrain_scheduler.main(["--history", "5"]) == 0
    out = capsys.readouterr().out
    assert "abc123" in out and "promoted" in out and "naive/v1" in out and "mase=0.980" in out


def test_second_process_exits_when_the_lock_is_held(tmp_path: Path) -> None:
    settings = get_settings()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_FORMAT": "text"}
    with cycle_lock(settings):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "retrain_scheduler.py"), "--once"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )
    assert proc.returncode == EXIT_LOCKED, proc.stderr
    assert "another retraining cycle is running" in proc.stderr
    assert not history_path(settings).exists()


def test_long_running_mode_serves_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    """A real process: the loop starts (no catch-up), /metrics answers, SIGTERM stops it (0)."""
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LOG_FORMAT": "text",
        "FREQUENCIES": "1d",
        "SCHEDULER_METRICS_PORT": str(port),
        "REFRESH_ENABLED": "false",  # no hourly refresh may start while the test runs
    }
    log_path = tmp_path / "scheduler.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "retrain_scheduler.py"), "--every", "1", "hours",
             "--no-catchup"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                wait_until(http, "/metrics", proc, log_path)
                text = http.get("/metrics").text
        finally:
            stop(proc)
    samples = metric_samples(text)
    assert samples[("retrain_runs_total", (("outcome", "success"),))] == 0
    assert samples[("retrain_promotions_total", (("series", "bitcoin-usd-1d"),))] == 0
    assert proc.returncode == 0, log_path.read_text()
    output = log_path.read_text()
    assert "signal 15 received: stopping after the current stage" in output
    assert "scheduler stopped" in output
    assert not history_path(get_settings()).exists()  # no catch-up cycle ran
    assert (tmp_path / "models" / "scheduler.prom").is_file()


@pytest.mark.slow
def test_once_on_the_offline_sample_promotes_a_champion(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.artifacts.store import ArtifactStore
    from pipeline.series import SeriesId

    monkeypatch.setenv("SOURCE", "sample")
    monkeypatch.setenv("FREQUENCIES", "1d")
    monkeypatch.setenv("HISTORY_DAYS", "120")
    get_settings.cache_clear()

    assert retrain_scheduler.main(["--once", "--models", "naive,drift"]) == 0

    settings = get_settings()
    champion = ArtifactStore(Path(settings.models_dir)).champion(SeriesId("bitcoin", "usd", "1d"))
    assert champion is not None and champion.model in {"naive", "drift"}
    history = read_history(settings)
    assert history[-1]["status"] == "success"
    assert history[-1]["series"][0]["status"] == "promoted"
    assert "bitcoin-usd-1d: promoted" in capsys.readouterr().out


@pytest.mark.slow
def test_real_api_serves_the_version_the_scheduler_promoted(tmp_path: Path) -> None:
    """Real processes on 127.0.0.1: the API starts empty, two scheduler cycles promote and ask it
    to reload, and it then serves exactly the promoted versions."""
    import httpx

    port = free_port()
    # A permissive gate: this test is about the processes' wiring, not about the sample's numbers.
    gate = json.loads((ROOT / "quality_gate.json").read_text())
    gate["thresholds"]["coverage_95_min"]["value"] = 0.0
    gate["thresholds"]["coverage_95_max"]["value"] = 1.0
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    env = {
        **os.environ,
        "GATE_CONFIG": str(tmp_path / "gate.json"),
        "PYTHONPATH": str(ROOT),
        "LOG_FORMAT": "json",
        "SOURCE": "sample",
        "COINS": "bitcoin",
        "FREQUENCIES": "1d",
        "HISTORY_DAYS": "150",
        "ADMIN_API_KEY": "test-admin-key",
        "API_URL": f"http://127.0.0.1:{port}",
        "SCHEDULER_METRICS_PORT": "0",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    champion_file = tmp_path / "models" / "bitcoin-usd-1d" / "champion.json"
    log = (tmp_path / "api.log").open("w")
    api = subprocess.Popen(
        [sys.executable, str(ROOT / "api_service.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_until(http, "/health/live", api, tmp_path / "api.log")
            assert http.get("/health").status_code == 503  # nothing trained yet

            served = []
            for _ in range(2):
                cycle = subprocess.run(
                    [sys.executable, str(ROOT / "retrain_scheduler.py"), "--once",
                     "--models", "naive,drift"],
                    cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                )  # fmt: skip
                assert cycle.returncode == 0, cycle.stderr[-3000:]
                assert "bitcoin-usd-1d: promoted" in cycle.stdout
                champion = json.loads(champion_file.read_text())
                body = http.post("/api/v1/predict", json={"timeframe": "1d", "steps": 3}).json()
                assert (body["model"], body["model_version"]) == (
                    champion["model"],
                    champion["version"],
                )
                served.append(body["model_version"])
            assert served[0] != served[1]  # the second cycle's new version is what is served
            history = read_history(
                get_settings().model_copy(update={"models_dir": tmp_path / "models"})
            )
            assert [r["reloaded_api"] for r in history] == [True, True]
    finally:
        stop(api)
        log.close()
