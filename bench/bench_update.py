"""Benchmark: refitting vs updating each default model on 2,160 hourly points.

    .venv/bin/python bench/bench_update.py [--points 2160] [--new 1] [--repeat 5]

For every default model it times one fit on ``--points`` hourly prices (the served 1h window),
then, from the saved model, ``load`` + ``update`` with the ``--new`` prices that follow, and
``predict`` of the 48-step path (medians of ``--repeat`` runs). Prices: the last hours of the
shared Bitstamp hourly file when ``../shared/data`` is there, else a seeded random walk.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.forecasters import DEFAULT_MODELS, horizon_params, make_forecaster  # noqa: E402
from pipeline.forecasters.base import Forecaster  # noqa: E402
from pipeline.series import FREQUENCY_TABLE  # noqa: E402

HOURLY = ROOT.parent / "shared" / "data" / "bitstamp_btcusd_1h_2018-2021.csv"


def hourly_prices(n: int) -> tuple[pd.Series, str]:
    """``n`` hourly prices on a regular UTC grid (real ones when the shared file exists)."""
    if HOURLY.is_file():
        from pipeline.ingest import read_csv_export

        frame = read_csv_export(HOURLY)
        y = frame.set_index("ds")["price"].astype(float)
        y = y[~y.index.duplicated()].asfreq("1h").ffill().dropna()
        return y.iloc[-n:], HOURLY.name
    index = pd.date_range("2021-01-01", periods=n, freq="1h", tz="UTC")
    rng = np.random.default_rng(0)
    return pd.Series(30000 * np.exp(np.cumsum(0.006 * rng.standard_normal(n))), index), "synthetic"


def median_seconds(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2160)
    parser.add_argument("--new", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    horizon = FREQUENCY_TABLE["1h"].horizon
    y, source = hourly_prices(args.points + args.new)
    train, new = y.iloc[: args.points], y.iloc[args.points :]
    print(f"{args.points} hourly points ({source}), update with {args.new}, horizon {horizon}")
    print(f"{'model':<16} {'fit s':>8} {'load+update s':>14} {'predict s':>10} {'ratio':>8}")
    total_fit = total_update = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in DEFAULT_MODELS:
            params = horizon_params(name, horizon)
            start = time.perf_counter()
            model = make_forecaster(name, **params).fit(train)
            fit = time.perf_counter() - start
            folder = Path(tmp) / name
            folder.mkdir()
            model.save(folder)
            cls, saved = type(model), model.get_params()

            def load_and_update(
                cls: type[Forecaster] = cls, folder: Path = folder, saved: dict[str, Any] = saved
            ) -> Forecaster:
                return cls.load(folder, saved).update(new)

            update = median_seconds(load_and_update, args.repeat)
            predict = median_seconds(lambda: model.predict(horizon), args.repeat)  # noqa: B023
            total_fit += fit
            total_update += update
            print(f"{name:<16} {fit:>8.3f} {update:>14.4f} {predict:>10.4f} {fit / update:>7.0f}x")
    print(f"{'all':<16} {total_fit:>8.3f} {total_update:>14.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
