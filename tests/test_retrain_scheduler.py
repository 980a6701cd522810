"""The retrain_scheduler.py command line, including real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import retrain_scheduler
from pipeline import scheduler as sched
from pipeline.config import get_settings

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_prints_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert retrain_scheduler.main(["--dry-run", "--at", "03:30"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["schedule"] == "daily at 03:30 UTC"
    assert plan["next_run"].endswith("03:30:00+00:00")
    assert plan["catchup_now"] is True
    assert plan["series"] == ["bitcoin-usd-1d", "bitcoin-usd-1h"]


def test_dry_run_with_every(capsys: pytest.CaptureFixture[str]) -> None:
    assert retrain_scheduler.main(["--dry-run", "--every", "6", "hours"]) == 0
    assert json.loads(capsys.readouterr().out)["schedule"] == "every 6 hours"


@pytest.mark.parametrize(
    "argv", [["--every", "0", "hours"], ["--every", "2", "days"], ["--at", "25:00"]]
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert retrain_scheduler.main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_history_when_empty(capsys: pytest.CaptureFixture[str]) -> None:
    assert retrain_scheduler.main(["--history"]) == 0
    assert "no cycles recorded yet" in capsys.readouterr().out


def test_history_lists_cycles(capsys: pytest.CaptureFixture[str]) -> None:
    settings = get_settings()
    record = sched.CycleRecord(run_id="abc123", started_at="2026-11-21T02:00:00+00:00")
    record.status, record.ended_at = "success", "2026-11-21T02:01:00+00:00"
    record.series.append(
        sched.SeriesOutcome(
            "bitcoin-usd-1d",
            "promoted",
            "passed",
            candidate="naive",
            version="v1",
            metrics={"mase": 0.98},
        )
    )
    sched.append_history(settings, record)
    assert retrain_scheduler.main(["--history", "5"]) == 0
    out = capsys.readouterr().out
    assert "abc123" in out and "promoted" in out and "naive/v1" in out and "mase=0.980" in out


def test_second_process_exits_when_the_lock_is_held(tmp_path: Path) -> None:
    settings = get_settings()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_FORMAT": "text"}
    with sched.cycle_lock(settings):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "retrain_scheduler.py"), "--once"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )
    assert proc.returncode == sched.EXIT_LOCKED, proc.stderr
    assert "another retraining cycle is running" in proc.stderr
    assert not sched.history_path(settings).exists()


@pytest.mark.slow
def test_once_on_the_offline_sample_promotes_a_champion(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.artifacts import ArtifactStore
    from pipeline.series import SeriesId

    monkeypatch.setenv("SOURCE", "sample")
    monkeypatch.setenv("FREQUENCIES", "1d")
    monkeypatch.setenv("HISTORY_DAYS", "120")
    get_settings.cache_clear()

    assert retrain_scheduler.main(["--once", "--models", "naive,drift"]) == 0

    settings = get_settings()
    champion = ArtifactStore(Path(settings.models_dir)).champion(SeriesId("bitcoin", "usd", "1d"))
    assert champion is not None and champion.model in {"naive", "drift"}
    history = sched.read_history(settings)
    assert history[-1]["status"] == "success"
    assert history[-1]["series"][0]["status"] == "promoted"
    assert "bitcoin-usd-1d: promoted" in capsys.readouterr().out
