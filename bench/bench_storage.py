"""Benchmark: models on an object store (moto_server, S3 over HTTP on 127.0.0.1) against local.

    .venv/bin/python bench/bench_storage.py [--requests 3000] [--rounds 5]

Builds the prediction API's benchmark artifacts (``bench_api.build_artifacts``: bitcoin 1d and
1h, naive and drift) twice: in a local models folder, and in the working copy of
``MODELS_DIR=s3://<bucket>/models`` (published as they are written). Then, in process (two apps
through started ``TestClient``s, lifespan and middleware included; the object-store app starts
from an empty cache, so it pulls and verifies everything first):

* ``POST /api/v1/predict`` on each, in interleaved rounds of the same run: requests/s, p50/p99
  and the ratio (models are in memory once loaded, so the two should be alike);
* the S3 requests of one publish (a new version written and promoted), of one poll that finds
  nothing new, and of the poll that pulls that version, with their times.

Needs ``moto[server]`` (requirements-dev.txt). Prints the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_api import build_artifacts, load_average  # noqa: E402

from pipeline.api.app import create_app  # noqa: E402
from pipeline.artifacts.store import ArtifactStore  # noqa: E402
from pipeline.config import get_settings, load_settings  # noqa: E402
from pipeline.storage.mirror import attach_all, mirror_for  # noqa: E402
from tests.helpers.s3 import start_server  # noqa: E402
from tests.helpers.serving import BTC_1D, TestClient, write  # noqa: E402

PREDICT = {"coin": "bitcoin", "timeframe": "1h", "steps": 7}


def started(env: dict[str, str]) -> TestClient:
    os.environ.update(env)
    get_settings.cache_clear()
    client = TestClient(create_app(configure_logs=False))
    client.__enter__()
    return client


def timed(client: TestClient, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.post("/api/v1/predict", json=PREDICT)
        out.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise SystemExit(f"predict: {response.status_code} {response.text[:300]}")
    return out


def delta(after: Counter[str], before: Counter[str]) -> str:
    counts = {k: after[k] - before.get(k, 0) for k in sorted(after)}
    total = sum(counts.values())
    return f"{total} ({', '.join(f'{k} {v}' for k, v in counts.items() if v) or 'none'})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    server = start_server()
    if isinstance(server, str):
        raise SystemExit(f"cannot start an S3 server: {server}")
    clients: list[TestClient] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bucket = server.new_bucket()
            url = f"s3://{bucket}/models"
            os.environ.update(server.env(), RATE_LIMIT_PER_MINUTE="0", DATA_DIR=f"{tmp}/data")
            build_artifacts(Path(tmp) / "local")
            writer = load_settings(models_dir=url, storage_cache_dir=Path(tmp) / "writer")
            wmirror = attach_all(writer)["models_dir"]
            t0 = time.perf_counter()
            build_artifacts(wmirror.root)
            print(f"bucket {bucket}: published 4 versions and 2 pointers in "
                  f"{time.perf_counter() - t0:.2f} s ({sum(wmirror.objects.requests.values())} "
                  "requests)")  # fmt: skip
            local = started({"MODELS_DIR": f"{tmp}/local"})
            t0 = time.perf_counter()
            remote = started({"MODELS_DIR": url, "STORAGE_CACHE_DIR": f"{tmp}/reader"})
            print(f"object-store app: started (pull + verify + load) in "
                  f"{time.perf_counter() - t0:.2f} s")  # fmt: skip
            clients += [local, remote]
            runs: dict[str, list[float]] = {"local": [], "s3": []}
            for client in clients:
                timed(client, 100)
            per_round = max(1, args.requests // args.rounds)
            for _ in range(args.rounds):
                for label, client in (("local", local), ("s3", remote)):
                    runs[label] += timed(client, per_round)
            rps = {k: len(v) / sum(v) for k, v in runs.items()}
            for label, v in runs.items():
                print(f"POST /api/v1/predict, models {label}: {rps[label]:.0f} req/s, p50 "
                      f"{np.percentile(v, 50) * 1000:.2f} ms, p99 "
                      f"{np.percentile(v, 99) * 1000:.2f} ms")  # fmt: skip
            print(f"throughput ratio object store / local disk: {rps['s3'] / rps['local']:.3f}")

            before = Counter(wmirror.objects.requests)
            t0 = time.perf_counter()
            meta = write(ArtifactStore(wmirror.root), BTC_1D, "naive", seed=5, promote=True)
            print(f"one publish (a version of {len(meta.files)} files + metadata.json, then the "
                  f"pointer): {delta(wmirror.objects.requests, before)} requests, "
                  f"{time.perf_counter() - t0:.3f} s with the fit")  # fmt: skip
            holder = remote.app.state.runtime.holder
            rmirror = mirror_for(holder.store.root)
            assert rmirror is not None
            before = Counter(rmirror.objects.requests)
            t0 = time.perf_counter()
            changed = holder.needs_reload()
            print(f"one poll that pulls it: {delta(rmirror.objects.requests, before)} requests, "
                  f"{(time.perf_counter() - t0) * 1000:.1f} ms (changed: {changed})")  # fmt: skip
            holder.reload()
            before = Counter(rmirror.objects.requests)
            t0 = time.perf_counter()
            changed = holder.needs_reload()
            took = (time.perf_counter() - t0) * 1000
            print(f"one poll that finds nothing new: {delta(rmirror.objects.requests, before)} "
                  f"requests, {took:.1f} ms (changed: {changed})")  # fmt: skip
    finally:
        for client in clients:
            client.__exit__(None, None, None)
        server.stop()
    print(f"load average: {load_average()} (1/5/15 min), {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
