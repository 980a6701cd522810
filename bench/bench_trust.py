"""Benchmark: the live-accuracy endpoint on a year of hourly issues, and the trust block's cost.

    .venv/bin/python bench/bench_trust.py [--days 365] [--models 3] [--steps 24] [--requests 2000]

Builds the prediction API's benchmark artifacts (``bench_api.build_artifacts``: bitcoin 1d and
1h, naive and drift) in a temporary models folder and an SQLite ledger beside them holding
``--days`` of hourly issues (24 a day) of ``--models`` models (``naive``, ``m1``, ...) for
bitcoin-usd-1h with ``--steps`` steps each, recorded with the ledger's own ``record`` and every
matured step scored with its ``score``. Then, in process (the app through a started
``TestClient``, lifespan and middleware included):

* (a) ``GET /api/v1/accuracy`` (1h, window 30d): p50/p99 over ``--requests`` requests as
  configured by default (answers kept for ``ACCURACY_CACHE_SECONDS``, 60 s: one ledger read,
  then the worker's copy); target p99 < 10 ms; beside it the same with
  ``ACCURACY_CACHE_SECONDS=0`` (a ledger read and serialisation per request: what the first
  request after each expiry pays), ``GET /health/live`` through the same client (the floor of
  the in-process harness) and the ledger read alone (``leaderboard``);
* (b) ``POST /api/v1/predict`` with the trust block and without (a second app with
  ``TRUST_IN_PREDICTIONS=false``), in interleaved rounds of the same run: requests/s, p50/p99
  and the ratio; and the cost of the block alone (``TrustCache.block`` plus the splice into the
  precomputed answer) in microseconds.

Prints the load average: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import timeit
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_api import build_artifacts, load_average  # noqa: E402

from pipeline.api.app import create_app  # noqa: E402
from pipeline.config import get_settings, load_settings  # noqa: E402
from pipeline.ledger.db import open_ledger  # noqa: E402
from pipeline.ledger.read import leaderboard  # noqa: E402
from pipeline.ledger.record import IssueEntry, record  # noqa: E402
from pipeline.ledger.score import score  # noqa: E402
from pipeline.series import SeriesId  # noqa: E402
from tests.helpers.ledger import synthetic_entries  # noqa: E402
from tests.helpers.serving import TestClient  # noqa: E402

HOURLY = SeriesId("bitcoin", "usd", "1h")
PREDICT = {"coin": "bitcoin", "timeframe": "1h", "steps": 7}


def entries_at(origin: pd.Timestamp, models: int, steps: int) -> list[IssueEntry]:
    """One issue per model from ``origin``; ``m1`` is named ``drift`` (the served champion)."""
    out = []
    for entry in synthetic_entries(HOURLY, models, steps, origin):
        if entry.info.record.model == "m1":
            rec = entry.info.record.model_copy(update={"model": "drift"})
            entry = replace(entry, info=replace(entry.info, record=rec))
        out.append(entry)
    return out


def fill_ledger(days: int, models: int, steps: int) -> tuple[int, float]:
    """Record ``days`` x 24 issues of ``models`` models and score them: (issues, seconds)."""
    settings = load_settings()
    hours = pd.date_range(end=pd.Timestamp.now(tz="UTC").floor("h"), periods=24 * days, freq="h")
    start = time.perf_counter()
    ledger = open_ledger(settings)
    try:
        for day in range(days):
            entries = [
                entry
                for origin in hours[24 * day : 24 * (day + 1)]
                for entry in entries_at(origin, models, steps)
            ]
            record(ledger, entries)
        # Prices that stay near the issues' median of 100, so the bands hold most of them.
        rng = np.random.default_rng(0)
        before = pd.date_range(end=hours[0], periods=1000, freq="h")
        index = before.append(hours[1:])
        prices = pd.Series(100 * np.exp(rng.normal(0, 0.01, len(index))), index)
        score(ledger, settings, [HOURLY], prices={HOURLY.name: prices})
    finally:
        ledger.close()
    return 24 * days * models, time.perf_counter() - start


def started(**env: str) -> TestClient:
    for key, value in env.items():
        os.environ[key] = value
    get_settings.cache_clear()
    client = TestClient(create_app(configure_logs=False))
    client.__enter__()
    return client


def timed(client: TestClient, n: int, method: str, url: str, **kw: object) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.request(method, url, **kw)  # type: ignore[arg-type]
        out.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise SystemExit(f"{method} {url}: {response.status_code} {response.text[:300]}")
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def block_cost_us(client: TestClient, n: int = 20000, repeat: int = 7) -> dict[str, float]:
    """Microseconds per call (best of ``repeat`` interleaved runs of ``n``): the block alone,
    and predict_json with the block and without it."""
    runtime = client.app.state.runtime
    served = runtime.holder.registry.find(HOURLY.name, "champion")
    now = runtime.clock()
    calls = {
        "block": lambda: runtime.trust.block(served, now),
        "with": lambda: served.predict_json(7, now=now, trust=runtime.trust.block(served, now)),
        "without": lambda: served.predict_json(7, now=now),
    }
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeat):
        for label, call in calls.items():
            seconds = timeit.timeit(call, number=n)
            best[label] = min(best[label], seconds / n * 1e6)
    return best


def leaderboard_ms(n: int) -> list[float]:
    """The ledger read behind /api/v1/accuracy alone (a fresh snapshot per call)."""
    settings = load_settings()
    ledger = open_ledger(settings)
    try:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            leaderboard(ledger, HOURLY.name, window="30d")
            out.append(time.perf_counter() - t0)
        return out
    finally:
        ledger.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(
            MODELS_DIR=f"{tmp}/models", DATA_DIR=f"{tmp}/data", REPORTS_DIR=f"{tmp}/reports",
            RATE_LIMIT_PER_MINUTE="0", TRUST_REFRESH_SECONDS="0",
        )  # fmt: skip
        build_artifacts(Path(tmp) / "models")
        # In a child process: the measuring process then holds only what an API worker holds
        # (not the recording's millions of objects, which its garbage collector would walk).
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            issues, seconds = pool.submit(fill_ledger, args.days, args.models, args.steps).result()
        size = Path(tmp, "models", "ledger.sqlite3").stat().st_size / 2**20
        print(f"ledger: {issues} issues ({args.days} days x 24 x {args.models} models, "
              f"{args.steps} steps), recorded+scored {seconds:.1f} s, {size:.0f} MiB")  # fmt: skip
        with_trust = started(TRUST_IN_PREDICTIONS="true")
        uncached = started(ACCURACY_CACHE_SECONDS="0")
        without = started(TRUST_IN_PREDICTIONS="false")
        try:
            query = {"coin": "bitcoin", "timeframe": "1h", "window": "30d"}
            timed(with_trust, 50, "GET", "/api/v1/accuracy", params=query)  # warm up
            acc = timed(with_trust, args.requests, "GET", "/api/v1/accuracy", params=query)
            print(f"(a) GET /api/v1/accuracy: p50 {pct(acc, 50):.2f} ms, p99 {pct(acc, 99):.2f} "
                  f"ms over {len(acc)} requests (target p99 < 10 ms; ledger reads: "
                  f"{with_trust.app.state.runtime.accuracy.misses})")  # fmt: skip
            timed(uncached, 50, "GET", "/api/v1/accuracy", params=query)
            cold = timed(uncached, args.requests, "GET", "/api/v1/accuracy", params=query)
            print(f"    the same with ACCURACY_CACHE_SECONDS=0 (a read per request): p50 "
                  f"{pct(cold, 50):.2f} ms, p99 {pct(cold, 99):.2f} ms")  # fmt: skip
            live = timed(with_trust, args.requests, "GET", "/health/live")
            print(f"    GET /health/live, the same client's floor: p50 {pct(live, 50):.2f} ms, "
                  f"p99 {pct(live, 99):.2f} ms")  # fmt: skip
            read = leaderboard_ms(args.requests)
            print(f"    the ledger read alone (leaderboard): p50 {pct(read, 50):.2f} ms, p99 "
                  f"{pct(read, 99):.2f} ms")  # fmt: skip
            trust = with_trust.post("/api/v1/predict", json=PREDICT).json()["trust"]
            print(f"    trust block of the answer: {trust}")
            runs: dict[str, list[float]] = {"with": [], "without": []}
            per_round = max(1, args.requests // args.rounds)
            for client in (with_trust, without):
                timed(client, 100, "POST", "/api/v1/predict", json=PREDICT)
            for _ in range(args.rounds):
                for label, client in (("with", with_trust), ("without", without)):
                    runs[label] += timed(client, per_round, "POST", "/api/v1/predict", json=PREDICT)
            rps = {k: len(v) / sum(v) for k, v in runs.items()}
            for label in ("with", "without"):
                v = runs[label]
                print(f"(b) POST /api/v1/predict {label} trust: {rps[label]:.0f} req/s, "
                      f"p50 {pct(v, 50):.2f} ms, p99 {pct(v, 99):.2f} ms")  # fmt: skip
            p50 = {k: pct(v, 50) for k, v in runs.items()}
            print(f"    throughput ratio with/without: {rps['with'] / rps['without']:.3f} (mean; "
                  f"the tails weigh in), {p50['without'] / p50['with']:.3f} (median)")  # fmt: skip
            us = block_cost_us(with_trust)
            print(f"    in the worker: the block {us['block']:.2f} us; predict_json "
                  f"{us['with']:.2f} us with it, {us['without']:.2f} us without")  # fmt: skip
        finally:
            for client in (with_trust, uncached, without):
                client.__exit__(None, None, None)
    print(f"load average: {load_average()} (1/5/15 min), {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
