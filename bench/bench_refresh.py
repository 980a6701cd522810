"""Benchmark: refreshing every default model of one hourly series, against a full retrain.

Trains the 10 default models on 2,160 hourly points (90 days) of the offline sample, fed
through the normal ingest path as a CSV export, with the nightly training (selection backtest
included) — the "full retrain" figure. Then appends one new hourly row to the export and times
``refresh_many`` from that new raw row to the new issues on disk: incremental ingest, process,
load every served version, update, predict, check, write. A second new row is timed too (the
steady state of the long-running scheduler, whose imports are warm). Target: well under 5 s on
2 cores.

    .venv/bin/python bench/bench_refresh.py [--points 2160] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings, load_settings  # noqa: E402
from pipeline.forecasters import DEFAULT_MODELS  # noqa: E402
from pipeline.ingest import ingest_series  # noqa: E402
from pipeline.ingest.sample import simulate  # noqa: E402
from pipeline.process.stage import process_series  # noqa: E402
from pipeline.refresh.stage import (  # noqa: E402
    SeriesRefresh,
    default_ingest,
    default_process,
    refresh_many,
)
from pipeline.series import SeriesId  # noqa: E402
from pipeline.train.stage import train_many  # noqa: E402

TARGET_SECONDS = 5.0
SERIES = SeriesId("bitcoin", "usd", "1h")


def export_lines(ds: list[object], prices: list[float]) -> list[str]:
    return [f"{d:%Y-%m-%d %H:%M:%S} UTC,{p:.6f},0.0,0.0" for d, p in zip(ds, prices, strict=True)]


class Timed:
    """A stage function that keeps the seconds of its last call."""

    def __init__(self, fn: Callable[[SeriesId, Settings], Any]) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, series: SeriesId, settings: Settings) -> Any:
        start = time.perf_counter()
        try:
            return self.fn(series, settings)
        finally:
            self.seconds = time.perf_counter() - start


def report(label: str, seconds: float, outcome: SeriesRefresh, stages: list[Timed]) -> None:
    counts = Counter(v.status for v in outcome.versions)
    update = sum(v.seconds for v in outcome.versions)
    print(f"{label}: {seconds:.2f} s, {outcome.status} ({dict(counts)}); ingest "
          f"{stages[0].seconds:.2f} s, process {stages[1].seconds:.2f} s, load + update + "
          f"write {update:.2f} s")  # fmt: skip
    for v in sorted(outcome.versions, key=lambda v: -v.seconds)[:4]:
        print(f"    {v.model:<16} {v.seconds:6.3f} s  {v.status}  {v.reason[:90]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=2160)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args(argv)

    frame = simulate(SERIES, args.points + 2, "2026-11-21T12:00:00Z", seed=42)
    ds, prices = list(frame["ds"]), list(frame["price"])
    with tempfile.TemporaryDirectory(prefix="bench-refresh-") as tmp:
        export = Path(tmp) / "export.csv"
        header = "snapped_at,price,market_cap,total_volume"
        lines = [header, *export_lines(ds[: args.points], prices[: args.points])]
        export.write_text("\n".join(lines) + "\n")
        settings = load_settings(
            source=f"csv:{export}", coins=["bitcoin"], frequencies=["1h"],
            data_dir=Path(tmp) / "data", models_dir=Path(tmp) / "models", n_jobs=args.n_jobs,
            log_level="WARNING",
        )  # fmt: skip
        start = time.perf_counter()
        ingest_series(SERIES, settings)
        process_series(SERIES, settings)
        (result,) = train_many([SERIES], settings, models=list(DEFAULT_MODELS), n_jobs=args.n_jobs)
        retrain = time.perf_counter() - start
        print(f"full retrain of {len(result.versions)} models on {args.points} hourly points "
              f"(N_JOBS={args.n_jobs}, selection backtest included): {retrain:.1f} s; "
              f"champion {result.champion}")  # fmt: skip

        figures = []
        for i, label in ((args.points, "refresh after 1 new row (cold)"),
                         (args.points + 1, "refresh after 1 more row (warm)")):  # fmt: skip
            with export.open("a") as fh:
                fh.write(export_lines(ds[i : i + 1], prices[i : i + 1])[0] + "\n")
            stages = [Timed(default_ingest), Timed(default_process)]
            start = time.perf_counter()
            (outcome,) = refresh_many([SERIES], settings, ingest=stages[0], process=stages[1])
            seconds = time.perf_counter() - start
            figures.append(seconds)
            report(label, seconds, outcome, stages)
    # The long-running scheduler refreshes with warm imports: the warm figure is its steady state.
    verdict = "meets" if figures[-1] < TARGET_SECONDS else "MISSES"
    ratio = retrain / figures[-1] if figures[-1] > 0 else math.inf
    print(f"\nrefresh {figures[0]:.2f} s cold / {figures[1]:.2f} s warm vs full retrain "
          f"{retrain:.1f} s ({ratio:.0f}x faster); warm target < {TARGET_SECONDS:.0f} s: "
          f"{verdict}, "
          f"load {os.getloadavg()[0]:.2f}; numpy {np.__version__}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
