"""Benchmark: recording forecast issues in the ledger and scoring a night of new prices.

    .venv/bin/python bench/bench_ledger.py [--repeat 20] [--postgres-url URL]

* record: one issue of 10 models x 48 steps (one transaction) into an SQLite ledger in WAL mode
  (median of ``--repeat`` distinct issues); target < 50 ms;
* score: one night for 10 hourly series x 10 models: 24 new prices per series, scored against
  every recorded step they mature (14 nights of issues recorded before, earlier nights already
  scored), the aggregates of each series refreshed; target < 1 s.

Wall and CPU time are printed: on a shared machine the CPU time is the steadier figure.
With ``--postgres-url`` (a database you can write to) the same runs on PostgreSQL too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import load_settings  # noqa: E402
from pipeline.ledger.db import Ledger, open_ledger  # noqa: E402
from pipeline.ledger.record import record  # noqa: E402
from pipeline.ledger.score import score  # noqa: E402
from pipeline.series import SeriesId  # noqa: E402
from tests.helpers.ledger import synthetic_entries  # noqa: E402

MODELS, STEPS, SERIES, NIGHTS = 10, 48, 10, 14


def bench_record(ledger: Ledger, repeat: int) -> tuple[float, float]:
    series = SeriesId("bitcoin", "usd", "1h")
    times, cpu = [], []
    start = pd.Timestamp("2021-01-01", tz="UTC")
    for k in range(repeat):
        entries = synthetic_entries(series, MODELS, STEPS, start + pd.Timedelta(hours=k))
        t0, c0 = time.perf_counter(), time.process_time()
        record(ledger, entries)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpu)


def bench_score(ledger: Ledger) -> tuple[float, float, int]:
    settings = load_settings()
    hours = pd.date_range("2021-01-01", periods=24 * (NIGHTS + 3), freq="h", tz="UTC")
    prices: dict[str, pd.Series] = {}
    names = [SeriesId(f"coin{i}", "usd", "1h") for i in range(SERIES)]
    rng = np.random.default_rng(0)
    for s in names:
        prices[s.name] = pd.Series(100 * np.exp(rng.normal(0, 0.003, len(hours)).cumsum()), hours)
        for night in range(NIGHTS):
            record(ledger, synthetic_entries(s, MODELS, STEPS, hours[24 * night]))
    last = 24 * NIGHTS
    score(ledger, settings, names, prices={k: v.iloc[: last - 24] for k, v in prices.items()})
    tonight = {k: v.iloc[:last] for k, v in prices.items()}
    t0, c0 = time.perf_counter(), time.process_time()
    result = score(ledger, settings, names, prices=tonight, now=datetime.now(UTC))
    return time.perf_counter() - t0, time.process_time() - c0, result.total


def run(ledger: Ledger, where: str, repeat: int) -> None:
    rec, rec_cpu = bench_record(ledger, repeat)
    print(f"{where}: record 1 issue of {MODELS} models x {STEPS} steps: {rec * 1000:.1f} ms "
          f"wall, {rec_cpu * 1000:.1f} ms CPU (median of {repeat}; target < 50 ms)")  # fmt: skip
    seconds, cpu, scored = bench_score(ledger)
    print(f"{where}: score a night of {SERIES} series x {MODELS} models ({scored} steps): "
          f"{seconds:.2f} s wall, {cpu:.2f} s CPU (target < 1 s)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres-url")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = open_ledger(url=f"sqlite:///{tmp}/ledger.sqlite3")
        run(ledger, "SQLite", args.repeat)
        ledger.close()
    if args.postgres_url:
        ledger = open_ledger(url=args.postgres_url)
        run(ledger, "PostgreSQL", args.repeat)
        ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
