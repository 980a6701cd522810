"""``python -m pipeline.train``: flags, output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.artifacts.store import CHAMPION_FILE, ArtifactStore
from pipeline.config import Settings
from pipeline.series import SeriesId
from pipeline.train import cli as train_cli
from tests.helpers import fakes
from tests.helpers.paths import ROOT

SERIES = SeriesId("bitcoin", "usd", "1d")
pytestmark = pytest.mark.usefixtures("restore_root_logger")  # main() configures logging


def test_cli_trains_and_prints_metrics(
    settings: Settings, y: pd.Series, capsys: pytest.CaptureFixture[str]
) -> None:
    code = train_cli.main(
        ["--coin", "bitcoin", "--freq", "1d", "--models", "naive,drift", "--holdout", "10"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "bitcoin-usd-1d (200 points)" in out
    assert "champion:" in out and "  naive    MASE " in out and "  drift    MASE " in out
    assert ArtifactStore(settings.models_dir).champion(SERIES) is not None


def test_cli_models_dir_and_until(y: pd.Series, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    args = ["--coin", "bitcoin", "--freq", "1d", "--models", "naive", "--holdout", "5"]
    assert train_cli.main([*args, "--models-dir", str(target), "--until", "2021-03-01"]) == 0
    (series_dir,) = target.iterdir()
    champ = json.loads((series_dir / CHAMPION_FILE).read_text("utf-8"))
    meta = json.loads(
        (series_dir / "naive" / champ["version"] / "metadata.json").read_text("utf-8")
    )
    assert meta["training"]["last_ds"].startswith("2021-02-28")


@pytest.mark.parametrize(
    "argv",
    [
        ["--models", "nope"],
        ["--order", "1,1"],
        ["--freq", "2h"],
        ["--coin", "Bitcoin!"],
        ["--holdout", "0"],
        ["--train-window", "0"],
        ["--until", "not-a-date"],
    ],
)
def test_cli_usage_errors_exit_2(y: pd.Series, argv: list[str]) -> None:
    assert train_cli.main(["--coin", "bitcoin", "--freq", "1d", *argv]) == 2


def test_cli_missing_processed_data_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert train_cli.main(["--coin", "bitcoin", "--freq", "1d", "--models", "naive"]) == 1
    assert "processed data not found" in capsys.readouterr().err


def test_cli_exits_1_when_every_model_fails(
    y: pd.Series, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fakes.register(monkeypatch, fakes.Broken)
    monkeypatch.setattr(fakes.Naive, "_fit", fakes.Broken._fit)  # naive breaks too
    assert train_cli.main(["--coin", "bitcoin", "--freq", "1d", "--models", "broken"]) == 1
    out = capsys.readouterr().out
    assert "  broken   FAILED  RuntimeError: simulated fit failure" in out
    assert "champion:" not in out


def test_python_m_pipeline_train_runs_the_cli(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "--freq", "2h"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "", "DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2, done.stderr
    assert "2h" in done.stderr
