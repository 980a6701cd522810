"""``python -m pipeline``: ingest -> process -> train end to end; stopping at a failing stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import __main__ as cli
from pipeline.artifacts.store import ArtifactStore
from pipeline.config import get_settings
from pipeline.series import SeriesId
from tests.helpers.paths import ROOT

BTC_1D = SeriesId("bitcoin", "usd", "1d")
BTC_1H = SeriesId("bitcoin", "usd", "1h")


def test_end_to_end_on_the_offline_sample(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--source", "sample", "--days", "40", "--models", "naive,drift"])
    out = capsys.readouterr().out
    assert code == 0, out
    store = ArtifactStore(get_settings().models_dir)
    for series in (BTC_1D, BTC_1H):
        champ = store.champion(series)
        assert champ is not None, series
        loaded = store.load(series, champ.model, champ.version, with_model=True)
        assert loaded.metadata.data_source == "sample"
        assert loaded.metadata.extra["simulated"] is True
        assert len(loaded.forecast) == get_settings().horizon(series.freq)
        assert set(store.list_models(series)) == {"naive", "drift"}
        row = next(line for line in out.splitlines() if line.startswith(series.name))
        assert champ.model in row and champ.version in row
    lines = out.splitlines()
    d_title = next(line for line in lines if line.startswith("bitcoin-usd-1d"))
    assert d_title.split()[1:3] == ["40", "points"]
    block = lines[lines.index(d_title) + 1 :]
    assert block[0].split()[:7] == ["model", "MASE", "/naive", "WIS", "/naive", "cov80", "cov95"]
    rows = [line.split() for line in block[1:3]]
    starred = [tokens[1] for tokens in rows if tokens[0] == "*"]
    names = {tokens[1] if tokens[0] == "*" else tokens[0] for tokens in rows}
    assert names == {"drift", "naive"}
    champ = store.champion(BTC_1D)
    assert champ is not None and starred == [champ.model]


def test_a_failing_ingest_stops_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.csv"
    code = cli.main(["--source", f"csv:{missing}", "--freq", "1d", "--models", "naive"])
    err = capsys.readouterr().err
    assert code == 2  # bad input: the file named by --source does not exist
    assert "pipeline stopped: ingest failed for bitcoin-usd-1d" in err
    assert not (get_settings().data_dir / "processed").exists()
    assert ArtifactStore(get_settings().models_dir).list_series() == []


def test_a_failing_process_stops_before_training(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.errors import ProcessingError
    from pipeline.process import stage as process

    def broken(*args: object, **kwargs: object) -> None:
        raise ProcessingError("simulated: raw file unreadable")

    monkeypatch.setattr(process, "process_series", broken)
    code = cli.main(["--source", "sample", "--days", "20", "--freq", "1d", "--models", "naive"])
    assert code == 1
    assert "process failed for bitcoin-usd-1d: simulated" in capsys.readouterr().err
    assert ArtifactStore(get_settings().models_dir).list_series() == []


@pytest.mark.parametrize(
    "argv",
    [["--freq", "2h"], ["--models", "nope"], ["--source", "ftp:x"], ["--coin", "BAD COIN"]],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_pipeline_runs_as_a_process(tmp_path: Path) -> None:
    """The real entry point, in a subprocess: exit code, summary on stdout, logs on stderr."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "--source",
            "sample",
            "--days",
            "30",
            "--freq",
            "1d",
            "--models",
            "naive",
            "--data-dir",
            str(tmp_path / "d"),
            "--models-dir",
            str(tmp_path / "m"),
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("bitcoin-usd-1d  30 points  champion: naive")
    champion = json.loads((tmp_path / "m" / "bitcoin-usd-1d" / "champion.json").read_text())
    assert champion["model"] == "naive"


def test_help_lists_frequencies_and_sources_from_their_owners() -> None:
    from pipeline.config import SOURCES
    from pipeline.series import freq_choices

    text = " ".join(cli.build_parser().format_help().split())
    assert f"--freq FREQ {freq_choices()}, comma-separated (default FREQUENCIES)" in text
    assert f"--source SOURCE {' | '.join(SOURCES)} (default SOURCE)" in text
