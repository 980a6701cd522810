"""``python -m pipeline.refresh``: flags, output and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from pipeline.config import Settings
from pipeline.refresh.cli import main
from pipeline.scheduling.history import cycle_lock, read_history
from tests.helpers.paths import ROOT
from tests.helpers.refresh import HOURLY, HourlyFeed


@pytest.fixture(autouse=True)
def feed_env(feed: HourlyFeed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE", f"csv:{feed.path}")
    monkeypatch.setenv("FREQUENCIES", "1h")


def test_a_refresh_prints_each_series_and_exits_0(
    feed: HourlyFeed,
    trained: dict[str, ArtifactMetadata],
    store: ArtifactStore,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    restore_root_logger: None,
) -> None:
    feed.append()
    assert main(["--coin", "bitcoin", "--freq", "1h"]) == 0
    assert capsys.readouterr().out == "bitcoin-usd-1h: refreshed - 2 issued\n"
    assert len(store.list_issues(HOURLY, "naive", trained["naive"].version)) == 1
    assert read_history(settings, kind="refresh") == []  # only the scheduler records refreshes
    assert main(["--no-ingest"]) == 0
    assert capsys.readouterr().out == "bitcoin-usd-1h: current - 2 current\n"


def test_a_refused_refresh_exits_1_and_names_the_versions(
    feed: HourlyFeed,
    trained: dict[str, ArtifactMetadata],
    capsys: pytest.CaptureFixture[str],
    restore_root_logger: None,
) -> None:
    feed.append(1, skip=6)
    assert main([]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("bitcoin-usd-1h: failed - bitcoin-usd-1h/naive/")
    assert lines[1].startswith(f"    naive/{trained['naive'].version}: refused - ")
    assert "refused, gap in the new data" in lines[1] and len(lines) == 3


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--freq", "5m"]) == 2
    assert "error: invalid setting(s): FREQUENCIES" in capsys.readouterr().err
    assert main(["--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_a_held_lock_exits_3_having_done_nothing(
    feed: HourlyFeed,
    trained: dict[str, ArtifactMetadata],
    store: ArtifactStore,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    restore_root_logger: None,
) -> None:
    feed.append()
    with cycle_lock(settings):
        assert main([]) == 3
    assert "another retraining cycle is running" in capsys.readouterr().err
    assert store.list_issues(HOURLY, "naive", trained["naive"].version) == []


def test_runs_as_a_module() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.refresh", "--help"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m pipeline.refresh")
