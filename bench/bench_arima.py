"""Benchmark: our AutoARIMA order selection against ``pmdarima.auto_arima`` on real BTC prices.

    .venv/bin/python bench/bench_arima.py [--repeat 3] [--data-dir ../shared/data]

On the Bitstamp daily (last 1,095 days, 30 held out) and hourly (last 2,160 hours, 24 held out)
files it times both selections in the same run (whole fit: unit-root test, search, final fit,
median of ``--repeat`` runs, imports excluded, both with BLAS limited to one thread), then prints
the chosen orders, the holdout MASE of each (scaled by the in-sample one-step naive MAE), and the
size and load time of our saved ARIMA and Prophet models. Exits 0 with a message when the shared
data folder is absent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.forecasters.arima import AutoARIMA  # noqa: E402
from pipeline.forecasters.base import Forecaster  # noqa: E402
from pipeline.forecasters.prophet_model import ProphetForecaster  # noqa: E402
from pipeline.ingest import read_csv_export  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Case:
    label: str
    file: str
    freq: str
    points: int
    holdout: int


CASES = (
    Case("BTC/USD 1d", "bitstamp_btcusd_1d_2014-2021.csv", "1d", 1095, 30),
    Case("BTC/USD 1h", "bitstamp_btcusd_1h_2018-2021.csv", "1h", 2160, 24),
)


def one_blas_thread() -> AbstractContextManager[object]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    """The last result and the median wall time of ``repeat`` calls."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        with one_blas_thread():
            result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def mase(actual: np.ndarray, forecast: np.ndarray, train: np.ndarray) -> float:
    scale = float(np.mean(np.abs(np.diff(train))))
    return float(np.mean(np.abs(actual - forecast)) / scale)


def load_series(path: Path, freq: str, points: int) -> pd.Series:
    frame = read_csv_export(path, freq=freq)
    y = pd.Series(frame["price"].to_numpy(float), index=pd.DatetimeIndex(frame["ds"]), name="y")
    return y.iloc[-points:]


def pmdarima_fit(log_train: np.ndarray) -> Any:
    import pmdarima

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pmdarima.auto_arima(log_train)


def artifact_figures(model: Forecaster) -> tuple[float, float]:
    """Size (KiB) of a saved model's files and the time (ms) to load it back."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = model.save(folder)
        size = sum((folder / n).stat().st_size for n in names) / 1024
        start = time.perf_counter()
        type(model).load(folder, model.get_params()).predict(1)
        return size, (time.perf_counter() - start) * 1000


def run_case(case: Case, data_dir: Path, repeat: int) -> dict[str, Any]:
    y = load_series(data_dir / case.file, case.freq, case.points)
    train, test = y.iloc[: -case.holdout], y.iloc[-case.holdout :].to_numpy()
    ours, t_ours = timed(lambda: AutoARIMA().fit(train), repeat)
    theirs, t_theirs = timed(lambda: pmdarima_fit(np.log(train.to_numpy())), repeat)
    ours_fc = ours.predict(case.holdout)["mean"].to_numpy()
    theirs_fc = np.exp(np.asarray(theirs.predict(n_periods=case.holdout)))
    naive_fc = np.full(case.holdout, train.iloc[-1])
    prophet = ProphetForecaster().fit(train)
    prophet_fc = prophet.predict(case.holdout)["mean"].to_numpy()
    info = ours.fitted_params()
    p, d, q = info["order"]
    arima_kib, arima_ms = artifact_figures(ours)
    prophet_kib, prophet_ms = artifact_figures(prophet)
    y_train = train.to_numpy()
    return {
        "case": case.label,
        "n_train": len(train),
        "holdout": case.holdout,
        "ours_s": t_ours,
        "pmdarima_s": t_theirs,
        "ours_order": f"({p},{d},{q}) {info['trend']}",
        "pmdarima_order": f"{theirs.order} {'const' if theirs.with_intercept else 'none'}",
        "ours_models": info["n_models"],
        "ours_mase": mase(test, ours_fc, y_train),
        "pmdarima_mase": mase(test, theirs_fc, y_train),
        "naive_mase": mase(test, naive_fc, y_train),
        "prophet_mase": mase(test, prophet_fc, y_train),
        "arima_kib": arima_kib,
        "arima_load_ms": arima_ms,
        "prophet_kib": prophet_kib,
        "prophet_load_ms": prophet_ms,
    }


def report(rows: list[dict[str, Any]], repeat: int) -> str:
    lines = [
        f"AutoARIMA order selection vs pmdarima.auto_arima (defaults), log prices, "
        f"median of {repeat} run(s), BLAS limited to 1 thread for both",
        "",
        f"{'series':<11} {'n':>5} {'ours s':>7} {'pmdarima s':>10} {'ratio':>6}  "
        f"{'our order':<16} {'pmdarima order':<16} {'MASE ours':>9} {'pmdarima':>8} "
        f"{'naive':>6} {'prophet':>7}",
    ]
    for r in rows:
        ratio = r["ours_s"] / r["pmdarima_s"]
        lines.append(
            f"{r['case']:<11} {r['n_train']:>5} {r['ours_s']:>7.3f} {r['pmdarima_s']:>10.3f} "
            f"{ratio:>6.2f}  {r['ours_order']:<16} {r['pmdarima_order']:<16} "
            f"{r['ours_mase']:>9.3f} {r['pmdarima_mase']:>8.3f} {r['naive_mase']:>6.3f} "
            f"{r['prophet_mase']:>7.3f}"
        )
    lines += ["", f"{'series':<11} {'arima file':>11} {'load':>8} {'prophet file':>13} {'load':>8}"]
    for r in rows:
        lines.append(
            f"{r['case']:<11} {r['arima_kib']:>7.1f} KiB {r['arima_load_ms']:>5.1f} ms "
            f"{r['prophet_kib']:>9.1f} KiB {r['prophet_load_ms']:>5.1f} ms"
        )
    lines.append("")
    for r in rows:
        faster = r["ours_s"] <= r["pmdarima_s"]
        no_worse = r["ours_mase"] <= r["pmdarima_mase"] + 1e-12
        lines.append(
            f"{r['case']}: speed target {'met' if faster else 'MISSED'} "
            f"({r['pmdarima_s'] / r['ours_s']:.1f}x pmdarima's speed); MASE target "
            f"{'met' if no_worse else 'MISSED'} "
            f"({r['ours_mase'] - r['pmdarima_mase']:+.4f} vs pmdarima, "
            f"{(r['ours_mase'] / r['pmdarima_mase'] - 1) * 100:+.2f}%)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per model (median)")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        print(f"bench_arima: {args.data_dir} is absent; nothing to benchmark (skipped)")
        return 0
    try:
        import pmdarima  # noqa: F401
    except ImportError:
        print("bench_arima: pmdarima is not installed (make install-dev); skipped")
        return 0
    import statsmodels.tsa.statespace.sarimax  # noqa: F401  (imports are not what we time)

    rows = [run_case(case, args.data_dir, max(1, args.repeat)) for case in CASES]
    print(report(rows, max(1, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
