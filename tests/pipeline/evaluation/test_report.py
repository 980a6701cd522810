"""The comparison report: its files, folders two runs never share, and whole-or-nothing writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.evaluation import plots
from pipeline.evaluation.backtest import BacktestResult, run_backtest
from pipeline.evaluation.champion import select_champion
from pipeline.evaluation.report import report_dir, write_report
from tests.helpers.backtests import LastValue, Trend, small_protocol
from tests.helpers.prices import random_walk_prices

NOW = datetime(2026, 11, 21, 10, 15, 0, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def result() -> BacktestResult:
    y = random_walk_prices(300)
    return run_backtest(y, [LastValue, Trend], small_protocol(y, n_origins=5), n_jobs=1)


def _write(result: BacktestResult, out_dir: Path, **kw: Any) -> dict[str, Path]:
    summary = result.summary()
    # "last" forecasts like naive: it stands in as the baseline the rule compares with.
    champion, reason = select_champion({**summary, "naive": summary["last"]}, coverage_band=(0, 1))
    options: dict[str, Any] = {
        "champion": champion,
        "reason": reason,
        "data_source": "synthetic",
        "coverage_band": (0.0, 1.0),
        "plots": False,
    }
    return write_report(result, out_dir, **{**options, **kw})


def test_folds_csv_recomputes_every_metric(result: BacktestResult, tmp_path: Path) -> None:
    files = _write(result, tmp_path / "r")
    summary = result.summary()
    folds = pd.read_csv(files["folds"])
    expected_cols = {
        "origin", "model", "ds", "step", "actual", "mean", "lower_80", "upper_80",
        "lower_95", "upper_95", "scale", "last_price",
    }  # fmt: skip
    assert expected_cols <= set(folds.columns)
    assert len(folds) == 2 * 5 * 5
    for (origin, model), fold in folds.groupby(["origin", "model"]):
        err = (fold["actual"] - fold["mean"]).abs()
        inside = (fold["actual"] >= fold["lower_95"]) & (fold["actual"] <= fold["upper_95"])
        row = result.fold_metrics[
            (result.fold_metrics["model"] == model)
            & (result.fold_metrics["origin"] == pd.Timestamp(origin))
        ].iloc[0]
        assert err.mean() / fold["scale"].iloc[0] == pytest.approx(row["mase"])
        assert err.mean() == pytest.approx(row["mae"])
        assert inside.mean() == pytest.approx(row["coverage_95"])
    for model, part in folds.groupby("model"):
        mase = ((part["actual"] - part["mean"]).abs() / part["scale"]).mean()
        assert mase == pytest.approx(summary[model]["mase"])
    report = json.loads(files["json"].read_text())
    assert report["champion"] == "last" and report["protocol"]["horizon"] == 5
    assert report["coverage_band"] == [0.0, 1.0] and report["gate"] is None
    markdown = files["md"].read_text()
    assert markdown.startswith(f"# Model comparison: {result.series}\n")
    assert "| Model |" in markdown and "## Plots" not in markdown


def test_report_folders_are_unique_and_sort_by_time(tmp_path: Path) -> None:
    first, second = report_dir(tmp_path, "s", NOW), report_dir(tmp_path, "s", NOW)
    assert first != second and first.parent == second.parent == tmp_path / "s"
    assert first.name.startswith("20261121T101500123456Z-")
    later = report_dir(tmp_path, "s", NOW.replace(microsecond=123457))
    assert sorted([later.name, first.name, second.name])[-1] == later.name


def test_two_reports_at_the_same_instant_get_two_folders(
    result: BacktestResult, tmp_path: Path
) -> None:
    one = _write(result, report_dir(tmp_path, "s", NOW))
    two = _write(result, report_dir(tmp_path, "s", NOW))
    assert one["json"].parent != two["json"].parent
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(
        [one["json"].parent.name, two["json"].parent.name]
    )
    assert json.loads(one["json"].read_text())["series"] == result.series


def test_an_existing_folder_is_never_written_into(result: BacktestResult, tmp_path: Path) -> None:
    taken = tmp_path / "s" / "taken"
    taken.mkdir(parents=True)
    with pytest.raises(FileExistsError, match="already exists"):
        _write(result, taken)
    assert list(taken.iterdir()) == []


def test_a_failed_write_leaves_no_half_report(
    result: BacktestResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_plot(*args: Any) -> None:
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(plots, "plot_forecasts", broken_plot)  # after the CSV and JSON files
    out_dir = report_dir(tmp_path, "s", NOW)
    with pytest.raises(RuntimeError, match="plotting failed"):
        _write(result, out_dir, plots=True)
    assert not out_dir.exists()
    assert list((tmp_path / "s").iterdir()) == []  # no temporary folder left behind either


def test_plots_are_pngs_named_in_the_markdown(result: BacktestResult, tmp_path: Path) -> None:
    files = _write(result, tmp_path / "r", plots=True)
    for key in ("forecasts_png", "mase_png"):
        assert files[key].read_bytes()[:4] == b"\x89PNG"
    assert "![forecasts](forecasts.png)" in files["md"].read_text()


def test_report_shows_wis_and_pinball_against_naive_and_the_calibration_tests(
    tmp_path: Path,
) -> None:
    y = random_walk_prices(300)
    result = run_backtest(y, ["naive", LastValue], small_protocol(y, n_origins=5), n_jobs=1)
    files = write_report(
        result,
        tmp_path / "r",
        champion="naive",
        reason="r",
        data_source="synthetic",
        coverage_band=(0.0, 1.0),
        plots=False,
    )
    report = json.loads(files["json"].read_text())
    summary = result.summary()
    last = summary["last"]
    assert report["metrics"]["naive"]["wis_ratio"] == 1.0
    assert report["metrics"]["last"]["wis_ratio"] == pytest.approx(
        last["wis"] / summary["naive"]["wis"]
    )
    assert len(report["metrics_by_horizon"]["last"]["wis"]) == 5
    assert report["wis_ratio_by_horizon"]["naive"] == [1.0] * 5
    assert set(report["calibration"]["models"]) == {"naive", "last"}
    assert report["calibration"]["samples"]["step_1"]["origins"] == 5
    markdown = files["md"].read_text()
    ratio = last["wis"] / summary["naive"]["wis"]
    assert f"| last | {last['wis']:,.0f} ({ratio:.3f}) | " in markdown
    assert "| naive | " + f"{summary['naive']['wis']:,.0f} (1.000) | " in markdown
    for title in ("## Proper scores", "## WIS by horizon step", "## Calibration tests"):
        assert f"\n{title}\n" in markdown
    assert "| Model | Step | n | Cov. 80 | Kupiec 80 p |" in markdown
    assert "`wis`: weighted interval score" in markdown
