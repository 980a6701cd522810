"""Benchmark: one retraining cycle of 40 series three ways on the same cores.

1. sequential: the series one after the other in this process, one fit at a time (N_JOBS=1);
2. local joblib: the same, with the fits of each series on 2 joblib processes (N_JOBS=2);
3. LocalCluster: every series a task on a local Dask cluster of 2 worker processes
   (``retrain_scheduler.py --workers 2``), its start-up measured apart.

Series: 20 coins x 1d and 1h, one year each by default (365 daily, 8,760 hourly points;
``--days``; ``--freqs 1d`` for one frequency). Bitcoin and ethereum come from the real files
in ``../shared/data`` when present (the last days of each export; ethereum has no hourly file
and uses the offline sample), every other coin from the offline sample at a fixed "now", so
every mode sees the same data. Models: by default the nightly defaults (``--models default``;
about an hour for 40 series x 3 modes on 2 shared cores); ``--models naive,drift,garch`` is a
cheaper set for a quick run. Every mode runs the real stages (ingest, process, the selection
backtest, gate, promotion) on fresh folders.

Reported: wall time, per-series cost (wall / series, the mean time one series' task took, per
frequency too, and the CPU seconds of this process and its children: the whole work when
sequential, only the client's share on a cluster), the overhead of the cluster (its wall time
next to the ideal: the tasks' own time split over its workers; and next to sequential), and
whether every mode chose the same champions with the same forecast paths.

    .venv/bin/python bench/bench_cluster.py [--coins 20] [--models default|naive,drift,garch]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings, load_settings  # noqa: E402
from pipeline.forecasters import DEFAULT_MODELS as NIGHTLY_MODELS  # noqa: E402
from pipeline.scheduling.cycle import default_stages, run_cycle  # noqa: E402
from pipeline.series import SeriesId  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
#: Real exports used when ../shared/data is present: (coin, frequency) -> file.
SHARED_FILES = {
    ("bitcoin", "1d"): "coingecko_btc-usd_1d_2010-2021.csv",
    ("bitcoin", "1h"): "bitstamp_btcusd_1h_2018-2021.csv",
    ("ethereum", "1d"): "coingecko_eth-usd_1d_2015-2021.csv",
}
FIXED_NOW = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
DEFAULT_MODELS = "default"


def bench_ingest(series: SeriesId, settings: Settings) -> Any:
    """The real ingest stage: a shared export's last year, else the offline sample."""
    from pipeline.ingest import ingest_series

    name = SHARED_FILES.get((series.coin, series.freq))
    if name is not None and (SHARED / name).is_file():
        days = settings.history_days
        return ingest_series(series, settings, source=f"csv:{SHARED / name}", days=days)
    return ingest_series(series, settings, source="sample", now=FIXED_NOW)


def champions(settings: Settings) -> dict[str, tuple[str, str]]:
    from pipeline.artifacts.store import ArtifactStore

    store = ArtifactStore(Path(settings.models_dir))
    out = {}
    for series in settings.series():
        pointer = store.champion(series)
        if pointer is not None:
            path = store.version_dir(series, pointer.model, pointer.version) / "forecast.csv"
            out[series.name] = (pointer.model, path.read_text())
    return out


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (user + system): less sensitive
    to the machine's load than wall time (a cluster's worker processes are not counted)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_mode(name: str, settings: Settings, models: list[str], workers: int) -> dict[str, Any]:
    from pipeline.scheduling.cluster import Cluster

    stages = replace(default_stages(), ingest=bench_ingest)
    startup = 0.0
    cluster = None
    if name == "cluster":
        cluster = Cluster(workers=workers)
        start = time.perf_counter()
        cluster.client()
        startup = time.perf_counter() - start
    try:
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        record = run_cycle(settings, stages=stages, models=models, cluster=cluster)
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    finally:
        if cluster is not None:
            cluster.close()
    return {
        "name": name,
        "wall": wall,
        "cpu": cpu,
        "startup": startup,
        "task_seconds": sum(o.seconds for o in record.series),
        "status": record.status,
        "statuses": [o.status for o in record.series],
        "seconds": {o.series: o.seconds for o in record.series},
        "champions": champions(settings),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coins", type=int, default=20, help="coins (x 1d and 1h series)")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="names, or 'default' (nightly)")
    parser.add_argument("--days", type=int, default=365, help="days of history per series")
    parser.add_argument("--freqs", default="1d,1h", help="frequencies of every coin")
    parser.add_argument("--workers", type=int, default=2, help="processes of joblib / Dask")
    parser.add_argument("--modes", default="sequential,joblib,cluster")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    coins = ["bitcoin", "ethereum"] + [f"samplecoin{i:02d}" for i in range(args.coins - 2)]
    freqs = args.freqs.split(",")
    models = list(NIGHTLY_MODELS) if args.models == "default" else args.models.split(",")
    shared = "present" if SHARED.is_dir() else "absent (offline sample only)"
    print(
        f"cycle of {len(freqs) * len(coins)} series ({len(coins)} coins x {args.freqs}; "
        f"{args.days} days; "
        f"../shared/data {shared}); models {','.join(models)}; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        for mode in args.modes.split(","):
            settings = load_settings(
                coins=coins,
                frequencies=freqs,
                history_days=args.days,
                data_dir=Path(tmp) / mode / "data",
                models_dir=Path(tmp) / mode / "models",
                n_jobs=args.workers if mode == "joblib" else 1,
                refresh_enabled=False,
                scheduler_metrics_port=0,
            )
            result = run_mode(mode, settings, models, args.workers)
            results.append(result)
            n = len(result["statuses"])
            print(
                f"{mode:<11} wall {result['wall']:7.1f} s  per series {result['wall'] / n:5.2f} s "
                f"wall, {result['task_seconds'] / n:5.2f} s task, {result['cpu'] / n:5.2f} s CPU  "
                f"status {result['status']}"
                + (f"  (cluster start-up {result['startup']:.1f} s)" if mode == "cluster" else "")
            )
            for freq in ("1d", "1h"):
                took = [t for s, t in result["seconds"].items() if s.endswith(f"-{freq}")]
                if took:
                    print(
                        f"{'':<11} {freq} series: {sum(took) / len(took):6.1f} s per series' task "
                        f"(mean of {len(took)}; min {min(took):.1f}, max {max(took):.1f})"
                    )
    by_name = {r["name"]: r for r in results}
    seq = by_name.get("sequential")
    if seq is not None:
        for other in results:
            if other is seq:
                continue
            ratio = other["wall"] / seq["wall"]
            print(f"{other['name']} / sequential wall time: {ratio:.2f}x")
    cluster = by_name.get("cluster")
    if cluster is not None:
        ideal = cluster["task_seconds"] / args.workers
        overhead = cluster["wall"] / ideal - 1 if ideal else float("nan")
        print(
            f"cluster overhead: wall {cluster['wall']:.1f} s vs its tasks' own "
            f"{cluster['task_seconds']:.1f} s over {args.workers} workers = {ideal:.1f} s: "
            f"{overhead:+.1%} (dispatch, transfers, waiting for the last task), plus "
            f"{cluster['startup']:.1f} s to start the local cluster once"
        )
    same = all(r["champions"] == results[0]["champions"] for r in results)
    print(
        f"same champions and forecast paths in every mode: {'yes' if same else 'NO'} "
        f"({len(results[0]['champions'])} series); load average {os.getloadavg()[0]:.2f}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
