"""compare_models.py end to end: reports, exit codes, the gate with a baseline, promotion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import compare_models
from pipeline.artifacts.store import ArtifactStore
from pipeline.evaluation.compare import CompareOptions
from pipeline.forecasters import make_forecaster
from pipeline.forecasters.baselines import Drift, Naive
from pipeline.series import SeriesId
from tests.helpers.exports import write_coingecko_export
from tests.helpers.fakes import register
from tests.helpers.paths import ROOT
from tests.helpers.prices import random_walk_prices

SERIES = SeriesId("bitcoin", "usd", "1d")
pytestmark = pytest.mark.usefixtures("restore_root_logger")  # main() configures logging
GATE = str(ROOT / "quality_gate.json")
FAST = [
    "--models",
    "naive,drift",
    "--horizon",
    "7",
    "--step",
    "14D",
    "--origins",
    "4",
    "--n-jobs",
    "1",
    "--no-plots",
    "--gate-config",
    GATE,
]


@pytest.fixture
def csv_export(tmp_path: Path) -> Path:
    """A CoinGecko-style "export CSV" of a simulated daily price path."""
    return write_coingecko_export(tmp_path / "btc-usd.csv", random_walk_prices(500, seed=3))


@pytest.fixture
def loose_gate(tmp_path: Path) -> str:
    """The committed gate config with a 0..1 coverage band (a 4-origin backtest is too small)."""
    config = json.loads(Path(GATE).read_text())
    config["thresholds"]["coverage_95_min"]["value"] = 0.0
    config["thresholds"]["coverage_95_max"]["value"] = 1.0
    path = tmp_path / "loose_gate.json"
    path.write_text(json.dumps(config))
    return str(path)


def _reports(root: Path) -> Path:
    """The one report folder a single run wrote."""
    [folder] = _folders(root)
    return folder


def _folders(root: Path) -> set[Path]:
    series_dir = root / "bitcoin-usd-1d"
    return set(series_dir.iterdir()) if series_dir.is_dir() else set()


def test_report_folder_holds_json_markdown_folds_and_plots(
    csv_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(csv_export), "--coin", "bitcoin", *FAST]
    args.remove("--no-plots")
    assert compare_models.main(args) == 0
    out = capsys.readouterr().out
    assert "| Model | MASE |" in out and "champion:" in out
    folder = _reports(tmp_path / "reports")
    names = {p.name for p in folder.iterdir()}
    assert {
        "comparison.json",
        "comparison.md",
        "folds.csv",
        "fold_metrics.csv",
        "forecasts.png",
        "mase_by_horizon.png",
    } <= names
    report = json.loads((folder / "comparison.json").read_text())
    assert report["champion"] in {"naive", "drift"} and report["champion_reason"]
    assert report["protocol"]["horizon"] == 7 and len(report["origins"]) == 4
    assert set(report["metrics"]) == {"naive", "drift"}
    assert (folder / "forecasts.png").read_bytes()[:4] == b"\x89PNG"
    folds = pd.read_csv(folder / "folds.csv")
    assert len(folds) == 2 * 4 * 7


def test_naive_always_competes(csv_export: Path, tmp_path: Path) -> None:
    args = ["--data", str(csv_export), *FAST]
    args[args.index("naive,drift")] = "drift"
    assert compare_models.main(args) == 0
    report = json.loads((_reports(tmp_path / "reports") / "comparison.json").read_text())
    assert report["models"] == ["naive", "drift"]


@pytest.fixture
def recorded_baseline(csv_export: Path, tmp_path: Path) -> Path:
    """A baseline of naive and drift recorded with the FAST protocol on the CSV export."""
    baseline = tmp_path / "baseline.json"
    args = ["--data", str(csv_export), "--baseline", str(baseline), *FAST, "--write-baseline"]
    assert compare_models.main(args) == 0
    return baseline


def test_gate_with_baseline_passes_then_catches_a_degraded_model(
    csv_export: Path,
    recorded_baseline: Path,
    loose_gate: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    baseline = recorded_baseline
    entry = json.loads(baseline.read_text())["series"]["bitcoin-usd-1d"]
    assert entry["protocol"]["horizon"] == 7 and set(entry["models"]) == {"naive", "drift"}

    # The gate reuses the baseline's protocol when no protocol flag is given.
    gate_args = [
        "--data",
        str(csv_export),
        "--baseline",
        str(baseline),
        "--gate",
        "--n-jobs",
        "1",
        "--no-plots",
        "--gate-config",
        loose_gate,
    ]
    capsys.readouterr()
    assert compare_models.main(gate_args) == 0
    assert "quality gate for bitcoin-usd-1d: PASSED" in capsys.readouterr().out

    # A "code change" that biases drift's forecasts by 5% must fail the gate, naming the rule.
    original = Drift._predict

    def degraded(self: Drift, h: int, levels: list[int]) -> pd.DataFrame:
        return original(self, h, levels) * 1.05

    monkeypatch.setattr(Drift, "_predict", degraded)
    assert compare_models.main(gate_args) == 1
    out = capsys.readouterr().out
    assert "quality gate for bitcoin-usd-1d: FAILED" in out
    assert "[FAIL] baseline_drift: drift mean MASE" in out and "limit" in out
    assert "[ok] baseline_naive" in out


def _wider(frame: pd.DataFrame, levels: list[int], factor: float) -> pd.DataFrame:
    """The same forecast with every band ``factor`` times as wide in log price."""
    out = frame.copy()
    for level in levels:
        for side in ("lower", "upper"):
            col = f"{side}_{level}"
            out[col] = np.exp(np.log(frame["mean"]) + factor * np.log(frame[col] / frame["mean"]))
    return out


def test_gate_catches_bands_30_percent_too_wide_that_mase_cannot_see(
    recorded_baseline: Path,
    csv_export: Path,
    loose_gate: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded = json.loads(recorded_baseline.read_text())["series"]["bitcoin-usd-1d"]["models"]
    base_args = ["--data", str(csv_export), "--baseline", str(recorded_baseline), *FAST]
    gate_args = [*base_args, "--gate", "--gate-config", loose_gate]
    capsys.readouterr()
    assert compare_models.main(gate_args) == 0
    assert f"[ok] baseline_wis_drift: drift mean WIS {recorded['drift']['wis']:,.2f}" in (
        capsys.readouterr().out
    )

    original = Drift._predict  # drift only: naive shares the method

    def too_wide(self: Drift, h: int, levels: list[int]) -> pd.DataFrame:
        return _wider(original(self, h, levels), levels, 1.3)

    monkeypatch.setattr(Drift, "_predict", too_wide)
    assert compare_models.main(gate_args) == 1
    out = capsys.readouterr().out
    assert "[FAIL] baseline_wis_drift: drift mean WIS" in out
    assert "[ok] baseline_drift: drift mean MASE" in out  # same point forecast, same MASE
    assert "[ok] baseline_wis_naive" in out


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("coin", "freq", "file", "degrade"),
    [
        ("ethereum", "1d", "coingecko_eth-usd_1d_2015-2021.csv", "wider"),
        ("bitcoin", "1h", "bitstamp_btcusd_1h_2018-2021.csv", "shifted"),
    ],
)
def test_committed_baseline_fails_a_degraded_garch_on_wis(
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    coin: str,
    freq: str,
    file: str,
    degrade: str,
) -> None:
    """``make gate``'s own baseline entry: garch passes, then fails once its bands are 30% too
    wide (ETH daily) or its whole forecast is 1% too high (BTC hourly)."""
    from pipeline.forecasters.garch import GarchForecaster as Garch

    args = [
        "--data", str(shared_data / file), "--coin", coin, "--freq", freq, "--models",
        "naive,garch", "--gate", "--baseline", str(ROOT / "quality_baseline.json"),
        "--gate-config", GATE, "--n-jobs", "1", "--no-plots",
    ]  # fmt: skip
    assert compare_models.main(args) == 0
    assert "[ok] baseline_wis_garch" in capsys.readouterr().out
    original = Garch._predict

    def degraded(self: Garch, h: int, levels: list[int]) -> pd.DataFrame:
        frame = original(self, h, levels)
        return _wider(frame, levels, 1.3) if degrade == "wider" else frame * 1.01

    monkeypatch.setattr(Garch, "_predict", degraded)
    assert compare_models.main(args) == 1
    out = capsys.readouterr().out
    assert "[FAIL] baseline_wis_garch: garch mean WIS" in out
    assert "[ok] baseline_wis_naive" in out


def test_impossible_threshold_fails_the_gate(
    csv_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads(Path(GATE).read_text())
    # The champion would have to beat naive by 50%: impossible when naive is the champion.
    config["thresholds"]["champion_mase_tolerance"]["value"] = -0.5
    strict = tmp_path / "strict_gate.json"
    strict.write_text(json.dumps(config))
    args = [
        "--data",
        str(csv_export),
        *FAST,
        "--gate",
        "--gate-config",
        str(strict),
        "--coverage-band",
        "0,1",
    ]
    assert compare_models.main(args) == 1
    out = capsys.readouterr().out
    assert "[FAIL] champion_vs_naive: champion naive mean MASE 1.2280, limit 0.6140" in out
    gate = json.loads((_reports(tmp_path / "reports") / "comparison.json").read_text())["gate"]
    assert gate["passed"] is False


def test_every_flag_is_an_option_with_the_same_default() -> None:
    args = compare_models.build_parser().parse_args([])
    assert CompareOptions(**vars(args)) == CompareOptions()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--source", "sample"], "compare_models evaluates local data"),
        (["--data", "missing.csv"], "no such file"),
        (
            ["--data", "{csv}", "--scheduler", "tcp://127.0.0.1:1", "--backend", "loky"],
            "--scheduler needs --backend dask",
        ),
        (["--data", "{csv}", "--models", "nonsense"], "unknown model 'nonsense'"),
        (["--data", "{csv}", "--models", "naive", "--horizon", "600"], "no usable origin"),
        (["--data", "{csv}", "--freq", "2d"], "invalid choice"),
        (["--data", "{csv}", "--baseline", "nope.json", "--gate"], "baseline nope.json not found"),
    ],
)
def test_bad_usage_exits_2(
    csv_export: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.replace("{csv}", str(csv_export)) for a in extra]
    assert compare_models.main(["--n-jobs", "1", "--gate-config", GATE, *args]) == 2
    assert message in capsys.readouterr().err


def test_gate_refuses_a_baseline_computed_on_other_data(
    csv_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "baseline.json"
    assert (
        compare_models.main(
            ["--data", str(csv_export), "--baseline", str(baseline), "--write-baseline", *FAST]
        )
        == 0
    )
    text = csv_export.read_text().replace(",0.0,0.0\n", ",0.0,0.0\n", 1)
    lines = text.splitlines()
    lines[-1] = lines[-1].replace(lines[-1].split(",")[1], "12345.0")
    csv_export.write_text("\n".join(lines) + "\n")
    args = [
        "--data",
        str(csv_export),
        "--baseline",
        str(baseline),
        "--gate",
        "--n-jobs",
        "1",
        "--no-plots",
        "--gate-config",
        GATE,
    ]
    assert compare_models.main(args) == 2
    assert "the data differs" in capsys.readouterr().err


def test_promote_needs_a_trained_model_then_promotes_it(
    csv_export: Path, tmp_path: Path, store: ArtifactStore, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(csv_export), *FAST, "--promote", "--coverage-band", "0,1"]
    assert compare_models.main(args) == 2
    err = capsys.readouterr().err
    assert "no trained" in err and "python -m pipeline.train --coin bitcoin" in err

    first_report = _reports(tmp_path / "reports")  # written before promotion was refused

    y = random_walk_prices(500, seed=3)
    for name in ("naive", "drift"):
        store.write_version(SERIES, make_forecaster(name).fit(y), y, horizon=7)
    assert compare_models.main(args) == 0
    [second_report] = _folders(tmp_path / "reports") - {first_report}  # a folder of its own
    champion = json.loads((second_report / "comparison.json").read_text())
    assert f"report: {second_report}" in capsys.readouterr().out
    pointer = store.champion(SERIES)
    assert pointer is not None and pointer.model == champion["champion"]
    assert pointer.reason.startswith("compare_models: ")


@pytest.mark.shared_data
def test_real_daily_file_compares_cleanly(shared_data: Path, tmp_path: Path) -> None:
    args = [
        "--data",
        str(shared_data / "bitstamp_btcusd_1d_2014-2021.csv"),
        "--coin",
        "bitcoin",
        *FAST,
        "--train-window",
        "365",
    ]
    assert compare_models.main(args) == 0
    report = json.loads((_reports(tmp_path / "reports") / "comparison.json").read_text())
    assert report["origins"][-1] == "2021-12-25T00:00:00+00:00"
    assert np.isfinite(report["metrics"]["naive"]["mase"])


# -- the champion rule end to end ----------------------------------------------------------
class Psychic(Naive):
    """Knows the future (``truth``) but forecasts it 0.3% high with 0.2%-wide bands: the best
    MASE by far, and intervals that almost never hold the price."""

    name: ClassVar[str] = "psychic"
    complexity: ClassVar[int] = 1
    truth: ClassVar[pd.Series] = pd.Series(dtype=float)

    def _fit(self, y: pd.Series) -> None:
        super()._fit(y)
        self.last_ = y.index[-1]

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        ahead = self.truth[self.truth.index > self.last_].iloc[:h].to_numpy() * 1.003
        out = {"mean": ahead}
        for level in levels:
            out[f"lower_{level}"], out[f"upper_{level}"] = ahead * 0.999, ahead * 1.001
        return pd.DataFrame(out)


class Sharp(Naive):
    """Naive with its log half-widths scaled by 0.55: calibrated enough on this series, and
    sharper than naive."""

    name: ClassVar[str] = "sharp"
    complexity: ClassVar[int] = 1

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        frame = super()._predict(h, levels)
        for level in levels:
            for side in ("lower", "upper"):
                col = f"{side}_{level}"
                frame[col] = np.exp(
                    np.log(frame["mean"]) + 0.55 * np.log(frame[col] / frame["mean"])
                )
        return frame


def test_champion_rule_calibrated_sharp_model_beats_a_lower_mase_miscalibrated_one(
    csv_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, Psychic, Sharp)
    monkeypatch.setattr(Psychic, "truth", random_walk_prices(500, seed=3))
    args = ["--data", str(csv_export), *FAST]
    args[args.index("naive,drift")] = "naive,drift,psychic,sharp"
    assert compare_models.main(args) == 0
    report = json.loads((_reports(tmp_path / "reports") / "comparison.json").read_text())
    metrics = report["metrics"]
    # psychic: by far the lowest MASE, even the lowest Winkler score, but its bands miss.
    assert metrics["psychic"]["mase"] < 0.2 * metrics["naive"]["mase"]
    assert metrics["psychic"]["winkler_95"] < metrics["sharp"]["winkler_95"]
    assert metrics["psychic"]["coverage_95"] < 0.9
    assert 0.9 <= metrics["sharp"]["coverage_95"] <= 0.99
    assert metrics["sharp"]["mase"] == pytest.approx(metrics["naive"]["mase"])
    assert report["coverage_band"] == [0.9, 0.99]  # the default band, not the gate's
    assert report["champion"] == "sharp"
    reason = report["champion_reason"]
    assert reason.startswith("sharp wins (rule: mean MASE <= naive's and 95% coverage inside")
    assert "psychic" in reason.split("95% coverage outside 90%–99%: ")[1]


def test_mase_tolerance_flag(
    csv_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(csv_export), *FAST, "--coverage-band", "0,1"]
    assert compare_models.main([*args, "--mase-tolerance", "-0.1"]) == 2
    assert "--mase-tolerance must be >= 0" in capsys.readouterr().err
    # drift is 2% worse than naive in MASE but sharper: a 5% tolerance lets it win.
    assert compare_models.main([*args, "--mase-tolerance", "0.05"]) == 0
    assert "mean MASE <= naive's + 5.0%" in capsys.readouterr().out
