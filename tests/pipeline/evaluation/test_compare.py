"""One comparison run as a library call: options, data loading, output and exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import get_settings
from pipeline.errors import UsageError
from pipeline.evaluation.champion import SELECTION_COVERAGE_BAND
from pipeline.evaluation.compare import (
    CompareOptions,
    load_csv_series,
    load_series,
    parse_coverage_band,
    run,
)
from pipeline.series import SeriesId
from tests.helpers.exports import write_coingecko_export
from tests.helpers.paths import ROOT
from tests.helpers.prices import random_walk_prices

SERIES = SeriesId("bitcoin", "usd", "1d")


@pytest.fixture
def export(tmp_path: Path) -> Path:
    return write_coingecko_export(tmp_path / "btc.csv", random_walk_prices(200, seed=3))


def test_coverage_band_parses_or_names_the_problem() -> None:
    assert parse_coverage_band(None) == SELECTION_COVERAGE_BAND
    assert parse_coverage_band("0.8,0.97") == (0.8, 0.97)
    with pytest.raises(UsageError, match="--coverage-band 'wide': use MIN,MAX like 0.90,0.99"):
        parse_coverage_band("wide")
    with pytest.raises(UsageError, match="need 0 <= MIN <= MAX <= 1"):
        parse_coverage_band("0.99,0.9")


def test_a_csv_export_is_read_onto_the_daily_grid(export: Path) -> None:
    y, label = load_csv_series(export, "1d", get_settings())
    expected = random_walk_prices(200, seed=3)
    assert label == "btc.csv (from 2021-01-01)"
    assert str(y.index.tz) == "UTC"
    assert (y.index[1:] - y.index[:-1] == pd.Timedelta("1D")).all()
    assert y.to_numpy() == pytest.approx(expected.to_numpy(), abs=1e-6)
    same, _ = load_series(CompareOptions(source=f"csv:{export}"), SERIES, get_settings())
    pd.testing.assert_series_equal(same, y)
    with pytest.raises(UsageError, match="compare_models evaluates local data"):
        load_series(CompareOptions(source="coingecko"), SERIES, get_settings())


def test_a_failed_gate_prints_why_writes_the_report_and_does_not_promote(
    export: Path, tmp_path: Path
) -> None:
    options = CompareOptions(
        data=export,
        models="drift",
        horizon=5,
        step="14D",
        origins=3,
        n_jobs=1,
        no_plots=True,
        coverage_band="0,1",
        reports_dir=tmp_path / "out",
        gate=True,
        gate_config=ROOT / "quality_gate.json",
        promote=True,
    )
    out = io.StringIO()
    assert run(options, get_settings(), out) == 1
    text = out.getvalue()
    assert text.startswith("bitcoin-usd-1d: 3 origins, horizon 5, ")
    assert "| Model | MASE |" in text and "\nchampion: " in text
    assert "quality gate for bitcoin-usd-1d: FAILED" in text
    [folder] = (tmp_path / "out" / "bitcoin-usd-1d").iterdir()
    report = json.loads((folder / "comparison.json").read_text())
    # 3 origins x 5 steps all inside the bands: 100% is above the gate's 99%
    champion = report["champion"]
    assert f"[FAIL] champion_coverage_95: champion {champion} 95% coverage 1.000" in text
    assert text.endswith("not promoting: the quality gate failed\n")
    assert not (get_settings().models_dir / "bitcoin-usd-1d" / "champion.json").exists()
    assert report["models"] == ["naive", "drift"] and report["coverage_band"] == [0.0, 1.0]
    assert f"report: {folder}" in text
