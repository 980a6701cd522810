"""Rolling-origin backtests with deterministic fake forecasters.

Origins, no look-ahead, sliding windows, refit-every-k, folds that recompute, champion selection,
the gate, and parallel runs (loky and a real Dask cluster).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ForecastError, UsageError
from pipeline.evaluation.backtest import (
    BacktestProtocol,
    default_protocol,
    make_origins,
    run_backtest,
)
from pipeline.evaluation.champion import (
    DEFAULT_COVERAGE_BAND,
    DEFAULT_MASE_TOLERANCE,
    select_champion,
)
from pipeline.evaluation.gate import (
    GateConfig,
    check_comparable,
    evaluate_gate,
    load_gate_config,
    read_baseline,
    series_fingerprint,
    write_baseline,
)
from pipeline.evaluation.report import write_report
from pipeline.forecasters.base import Forecaster
from tests.helpers.paths import ROOT
from tests.helpers.prices import random_walk_prices


class LastValue(Forecaster):
    """Forecasts the last price it saw, with +-2%/+-5% bands: profits from any leaked future."""

    name: ClassVar[str] = "last"
    min_points: ClassVar[int] = 3
    complexity: ClassVar[int] = 0
    seen: ClassVar[list[pd.DatetimeIndex]] = []

    def _fit(self, y: pd.Series) -> None:
        type(self).seen.append(y.index.copy())
        self.value_ = float(y.iloc[-1])

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        mean = np.full(h, self.value_)
        out: dict[str, Any] = {"mean": mean}
        for level in levels:
            width = 0.02 if level == 80 else 0.05
            out[f"lower_{level}"] = mean * (1 - width)
            out[f"upper_{level}"] = mean * (1 + width)
        return pd.DataFrame(out)

    def _save_state(self, folder: Path) -> list[str]:  # pragma: no cover - not persisted
        return []

    def _load_state(self, folder: Path) -> None:  # pragma: no cover
        pass


class Trend(LastValue):
    """Extrapolates the last step: a 'more complex' model."""

    name: ClassVar[str] = "trend"
    complexity: ClassVar[int] = 2

    def _fit(self, y: pd.Series) -> None:
        self.value_ = float(y.iloc[-1])
        self.slope_ = float(y.iloc[-1] - y.iloc[-2])

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        frame = super()._predict(h, levels)
        shift = self.slope_ * np.arange(1, h + 1)
        for col in frame:
            frame[col] = frame[col] + shift
        return frame.clip(lower=1e-6)


class Broken(LastValue):
    name: ClassVar[str] = "broken"

    def _fit(self, y: pd.Series) -> None:
        raise ForecastError("broken: refuses to fit")


def _rising(n: int = 120, freq: str = "1D") -> pd.Series:
    index = pd.date_range("2021-01-01", periods=n, freq=freq, tz="UTC", name="ds")
    return pd.Series(100.0 + np.arange(n, dtype=float), index=index, name="y")


def _protocol(y: pd.Series, **kw: Any) -> BacktestProtocol:
    base: dict[str, Any] = {"horizon": 5, "step": "10D", "n_origins": 4}
    base.update(kw)
    return default_protocol("1d", y.index, **base)


# -- protocol ------------------------------------------------------------------------------
def test_default_protocols_per_frequency() -> None:
    daily = default_protocol("1d", _rising(1200).index)
    assert (daily.horizon, daily.step, daily.train_window) == (30, pd.Timedelta("30D"), None)
    origins = make_origins(_rising(1200).index, daily)
    assert len(origins) == 24
    assert origins[-1] + 30 == 1200  # the last origin has exactly a full horizon of actuals
    hourly = default_protocol("1h", _rising(5000, "1h").index)
    assert (hourly.horizon, hourly.step) == (24, pd.Timedelta("7D"))
    pos = make_origins(_rising(5000, "1h").index, hourly)
    assert np.diff(pos).tolist() == [168] * (len(pos) - 1)


def test_origins_without_enough_history_or_future_are_dropped() -> None:
    y = _rising(50)
    protocol = BacktestProtocol(
        "1d", 10, pd.Timedelta("10D"), y.index[0], y.index[-1], train_window=None
    )
    assert make_origins(y.index, protocol, min_train=5) == [10, 20, 30, 40]


def test_protocol_round_trips_through_json() -> None:
    p = _protocol(_rising(), train_window=30, refit_every=2)
    again = BacktestProtocol.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p


def test_protocol_rejects_bad_values() -> None:
    with pytest.raises(UsageError, match="--horizon must be >= 1"):
        _protocol(_rising(), horizon=0)
    with pytest.raises(UsageError, match="invalid --step"):
        _protocol(_rising(), step="soon")
    with pytest.raises(UsageError, match="no usable origin"):
        run_backtest(_rising(20), [LastValue], _protocol(_rising(20), horizon=30), n_jobs=1)


# -- no look-ahead -----------------------------------------------------------------------------
def test_a_model_sees_only_data_strictly_before_its_origin() -> None:
    y = _rising()
    LastValue.seen.clear()
    result = run_backtest(y, [LastValue], _protocol(y), n_jobs=1)
    assert len(LastValue.seen) == len(result.origins) == 4
    for seen, origin in zip(LastValue.seen, result.origins, strict=True):
        assert seen.max() < origin
        assert seen.equals(y.index[y.index < origin])  # expanding: everything before it
    # On a rising series a model that saw the origin's price would forecast it exactly;
    # it forecasts the previous price instead, so every step-1 error is exactly one step's rise.
    first = result.folds[result.folds["step"] == 1]
    assert (first["actual"] - first["mean"]).tolist() == [1.0] * 4


def test_sliding_window_and_refit_every_k_never_leak() -> None:
    y = _rising()
    LastValue.seen.clear()
    result = run_backtest(y, [LastValue], _protocol(y, train_window=15, refit_every=3), n_jobs=1)
    assert len(LastValue.seen) == 2  # origins 1-3 share a fit, origin 4 refits
    assert all(len(s) == 15 for s in LastValue.seen)
    fm = result.fold_metrics
    assert fm["refit"].tolist() == [True, False, False, True]
    assert LastValue.seen[0].max() < result.origins[0]
    # Origins 2 and 3 are forecast by the fit made before origin 1 (it saw no newer data).
    o2 = result.folds[(result.folds["origin"] == result.origins[1]) & (result.folds["step"] == 1)]
    assert float(o2["mean"].iloc[0]) == float(y[y.index < result.origins[0]].iloc[-1])


# -- folds, metrics, recomputation -----------------------------------------------------------
def test_folds_csv_recomputes_every_metric(tmp_path: Path) -> None:
    y = random_walk_prices(300)
    result = run_backtest(y, [LastValue, Trend], _protocol(y, n_origins=5), n_jobs=1)
    summary = result.summary()
    # "last" forecasts like naive: it stands in as the baseline the rule compares with.
    champion, reason = select_champion({**summary, "naive": summary["last"]}, coverage_band=(0, 1))
    files = write_report(
        result,
        tmp_path / "r",
        champion=champion,
        reason=reason,
        data_source="synthetic",
        coverage_band=(0.0, 1.0),
        plots=False,
    )
    folds = pd.read_csv(files["folds"])
    expected_cols = {
        "origin",
        "model",
        "ds",
        "step",
        "actual",
        "mean",
        "lower_80",
        "upper_80",
        "lower_95",
        "upper_95",
        "scale",
        "last_price",
    }
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
    assert report["champion"] == champion and report["champion_reason"] == reason
    assert report["protocol"]["horizon"] == 5
    assert "| Model |" in files["md"].read_text()


def test_by_horizon_pools_origins_per_step() -> None:
    y = _rising()
    result = run_backtest(y, [LastValue], _protocol(y), n_jobs=1)
    table = result.by_horizon()
    assert table["step"].tolist() == [1, 2, 3, 4, 5]
    # Forecasting the last price on a +1/step series: error at step k is exactly k.
    assert table["mae"].tolist() == pytest.approx([1, 2, 3, 4, 5])
    assert table["mase"].tolist() == pytest.approx([1, 2, 3, 4, 5])  # naive scale is 1


def test_a_failing_model_is_recorded_and_cannot_win() -> None:
    y = random_walk_prices(200)
    result = run_backtest(y, [LastValue, Broken], _protocol(y), n_jobs=1)
    summary = result.summary()
    assert summary["broken"]["failed_folds"] == 4 and math.isnan(summary["broken"]["mase"])
    assert "refuses to fit" in result.failures["broken"][0]
    assert summary["last"]["n_folds"] == 4
    assert select_champion({**summary, "naive": summary["last"]})[0] in {"last", "naive"}


# -- champion selection -------------------------------------------------------------------
def _row(
    mase: float, cov: float, complexity: int = 0, failed: int = 0, winkler: float = 100.0
) -> dict[str, float]:
    return {
        "mase": mase,
        "coverage_95": cov,
        "winkler_95": winkler,
        "complexity": complexity,
        "failed_folds": failed,
    }


def test_default_rule_band_and_tolerance() -> None:
    assert DEFAULT_COVERAGE_BAND == (0.90, 0.99) and DEFAULT_MASE_TOLERANCE == 0.0


def test_lowest_winkler_wins_among_calibrated_models_not_worse_than_naive() -> None:
    metrics = {
        "naive": _row(1.0, 0.95, 0, winkler=100.0),
        "garch": _row(1.0, 0.94, 2, winkler=97.0),
        "ensemble": _row(0.999, 0.96, 3, winkler=98.0),
        "drift": _row(1.01, 0.95, 1, winkler=90.0),  # sharpest, but worse than naive in MASE
        "prophet": _row(0.5, 0.40, 3, winkler=300.0),  # best MASE, useless intervals
    }
    name, reason = select_champion(metrics)
    assert name == "garch"
    assert reason.startswith(
        "garch wins (rule: mean MASE <= naive's and 95% coverage inside 90%–99%, "
        "then the lowest Winkler-95 score wins): MASE 1.000 (1.000x naive), "
        "95% coverage 94.0%, Winkler-95 97 (0.970x naive)"
    )
    assert "runner-up ensemble: MASE 0.999 (0.999x naive), 95% coverage 96.0%, " in reason
    assert "other eligible: naive" in reason
    assert "MASE worse than naive's 1.000: drift 1.010" in reason
    assert "95% coverage outside 90%–99%: prophet 40.0%" in reason
    # A 2% MASE tolerance lets drift compete, and its Winkler score is the lowest.
    name, reason = select_champion(metrics, mase_tolerance=0.02)
    assert name == "drift" and "mean MASE <= naive's + 2.0%" in reason


def test_lower_mase_with_miscalibrated_bands_loses_to_a_calibrated_model() -> None:
    metrics = {
        "naive": _row(1.0, 0.88, 0, winkler=120.0),  # under-covers: not eligible itself
        "arima": _row(0.90, 0.80, 2, winkler=95.0),  # lower MASE and Winkler, bands too narrow
        "conformal_naive": _row(1.0, 0.95, 1, winkler=110.0),
    }
    name, reason = select_champion(metrics)
    assert name == "conformal_naive"
    assert "95% coverage outside 90%–99%: naive 88.0%, arima 80.0%" in reason
    assert "no other model is eligible" in reason
    # Widen the band and arima (lower MASE, lower Winkler) takes it.
    assert select_champion(metrics, coverage_band=(0.75, 0.99))[0] == "arima"


def test_ties_go_to_the_simpler_model_and_failures_are_excluded() -> None:
    metrics = {"naive": _row(1.0, 0.95, 0), "garch": _row(1.0, 0.95, 2, winkler=100 + 1e-10)}
    name, reason = select_champion(metrics)
    assert name == "naive" and "tied in Winkler-95 with garch: the simpler model wins" in reason
    metrics = {"naive": _row(1.0, 0.95, 0), "arima": _row(0.5, 0.95, 2, failed=1, winkler=1.0)}
    name, reason = select_champion(metrics)
    assert name == "naive" and "arima failed at 1 origin(s)" in reason
    metrics = {"naive": _row(1.0, 0.95, 0), "odd": _row(0.9, 0.95, 1, winkler=math.nan)}
    assert "odd has no Winkler-95 score" in select_champion(metrics)[1]


def test_naive_wins_when_no_model_is_eligible() -> None:
    metrics = {
        "naive": _row(1.0, 0.5, 0, winkler=200.0),
        "arima": _row(0.8, 0.6, 2, winkler=150.0),
        "drift": _row(1.2, 0.95, 1, winkler=90.0),
    }
    name, reason = select_champion(metrics)
    assert name == "naive"
    assert reason == (
        "no model is eligible (rule: mean MASE <= naive's and 95% coverage inside 90%–99%, "
        "then the lowest Winkler-95 score wins); MASE worse than naive's 1.000: drift 1.200; "
        "95% coverage outside 90%–99%: naive 50.0%, arima 60.0%; the naive baseline wins by "
        "default (MASE 1.000, 95% coverage 50.0%, Winkler-95 200)"
    )


def test_the_rule_needs_the_naive_baseline() -> None:
    with pytest.raises(UsageError, match="compares every model with the naive baseline"):
        select_champion({"arima": _row(1.0, 0.95, 2)})
    with pytest.raises(UsageError, match="no model results"):
        select_champion({})


# -- the gate ------------------------------------------------------------------------------
def test_committed_gate_config_loads() -> None:
    config = load_gate_config(ROOT / "quality_gate.json")
    assert config.coverage_band == (0.85, 0.99)
    raw = json.loads((ROOT / "quality_gate.json").read_text())
    assert all(rule["description"] for rule in raw["thresholds"].values())


def test_gate_fails_and_names_rule_value_and_threshold() -> None:
    summary = {"naive": _row(1.0, 0.90), "arima": _row(0.95, 0.97, 2)}
    ok = evaluate_gate("x", summary, "arima", GateConfig(0.05, (0.85, 0.99), 0.02))
    assert ok.passed
    impossible = GateConfig(0.05, (0.98, 1.0), 0.02)
    outcome = evaluate_gate("x", summary, "arima", impossible)
    assert not outcome.passed
    [failure] = outcome.failures()
    assert failure.rule == "champion_coverage_95"
    assert "95% coverage 0.970, band [0.98, 1.00]" in failure.message
    baseline = {"models": {"naive": {"mase": 1.0}, "arima": {"mase": 0.80}}}
    outcome = evaluate_gate("x", summary, "arima", GateConfig(), baseline_entry=baseline)
    [failure] = outcome.failures()
    assert failure.rule == "baseline_arima"
    assert failure.message == "arima mean MASE 0.9500, limit 0.8080 (baseline 0.8000 x (1 + 0.01))"


def test_broken_forecaster_fails_the_gate() -> None:
    y = random_walk_prices(200)
    result = run_backtest(y, [LastValue, Broken], _protocol(y), n_jobs=1)
    summary = result.summary()
    summary["naive"] = summary.pop("last")
    champion, _ = select_champion(summary)
    outcome = evaluate_gate("x", summary, champion, GateConfig(0.05, (0.0, 1.0), 0.02))
    assert [c.rule for c in outcome.failures()] == ["all_folds_fit"]
    assert "broken 4 (threshold 0)" in outcome.failures()[0].message


def test_baseline_round_trip_and_comparability(tmp_path: Path) -> None:
    y = random_walk_prices(200)
    protocol = _protocol(y).to_dict()
    path = tmp_path / "baseline.json"
    fp = series_fingerprint(y)
    summary = {"naive": _row(1.0, 0.9)}
    write_baseline(
        path, "a", protocol=protocol, summary=summary, fingerprint=fp, data="d", champion="naive"
    )
    write_baseline(
        path, "b", protocol=protocol, summary=summary, fingerprint=fp, data="d", champion="naive"
    )
    entry = read_baseline(path)["series"]["a"]
    assert set(read_baseline(path)["series"]) == {"a", "b"}
    check_comparable(entry, protocol, fp, path)
    with pytest.raises(UsageError, match="protocol differs"):
        check_comparable(entry, {**protocol, "horizon": 9}, fp, path)
    with pytest.raises(UsageError, match="data differs"):
        check_comparable(entry, protocol, series_fingerprint(y * 1.01), path)


# -- parallel runs --------------------------------------------------------------------------
def _comparable(result: Any) -> pd.DataFrame:
    return result.folds.sort_values(["model", "origin", "step"]).reset_index(drop=True)


def test_loky_workers_give_the_sequential_results() -> None:
    y = random_walk_prices(300)
    protocol = _protocol(y, n_origins=6)
    local = run_backtest(y, [LastValue, Trend], protocol, n_jobs=1)
    parallel = run_backtest(y, [LastValue, Trend], protocol, n_jobs=2, backend="loky")
    pd.testing.assert_frame_equal(_comparable(local), _comparable(parallel))
    assert local.summary()["trend"]["mase"] == parallel.summary()["trend"]["mase"]


@pytest.mark.slow
def test_dask_cluster_gives_the_local_results() -> None:
    distributed = pytest.importorskip("distributed")
    y = random_walk_prices(300)
    protocol = _protocol(y, n_origins=6, refit_every=2)
    local = run_backtest(y, [LastValue, Trend], protocol, n_jobs=1)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
    ):
        remote = run_backtest(
            y, [LastValue, Trend], protocol, backend="dask", scheduler=cluster.scheduler_address
        )
    pd.testing.assert_frame_equal(_comparable(local), _comparable(remote))
    cols = ["mase", "coverage_95", "winkler_95"]
    for model in ("last", "trend"):
        assert [local.summary()[model][c] for c in cols] == [
            remote.summary()[model][c] for c in cols
        ]


def test_gate_catches_wider_intervals_that_mase_cannot_see() -> None:
    """Same point forecast (same MASE) but worse bands: only the Winkler baseline rule fails."""
    summary = {"naive": _row(1.0, 0.95), "garch": _row(1.0, 0.95, 2)}
    summary["naive"]["winkler_95"] = 100.0
    summary["garch"]["winkler_95"] = 103.0
    baseline = {
        "models": {
            "naive": {"mase": 1.0, "winkler_95": 100.0},
            "garch": {"mase": 1.0, "winkler_95": 100.0},
        }
    }
    outcome = evaluate_gate("x", summary, "naive", GateConfig(), baseline_entry=baseline)
    [failure] = outcome.failures()
    assert failure.rule == "baseline_winkler_garch"
    assert failure.message == (
        "garch mean Winkler-95 103.00, limit 102.00 (baseline 100.00 x (1 + 0.02))"
    )
