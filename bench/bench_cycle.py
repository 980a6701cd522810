"""Benchmark: one nightly retraining cycle for 2 coins x 2 frequencies with every default model.

Runs ``retrain_scheduler.py --once`` as a real process on a fresh temporary data/models folder,
so the figure includes start-up, ingest, processing, training with the selection backtest, the
gate and promotion — exactly what runs at night. Data: the offline sample (this machine has no
internet), one year of history per series (365 daily, 8,760 hourly points), the default
``BACKTEST_ORIGINS`` and ``BACKTEST_WINDOW``. Target (issue 7): under 5 minutes on 2 cores.

    .venv/bin/python bench/bench_cycle.py [--coins bitcoin,ethereum] [--freqs 1d,1h] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 300.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coins", default="bitcoin,ethereum")
    parser.add_argument("--freqs", default="1d,1h")
    parser.add_argument("--n-jobs", default="2", help="N_JOBS for training (default 2 cores)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as tmp:
        env = {
            **os.environ,
            "SOURCE": "sample",
            "COINS": args.coins,
            "FREQUENCIES": args.freqs,
            "DATA_DIR": str(Path(tmp) / "data"),
            "MODELS_DIR": str(Path(tmp) / "models"),
            "N_JOBS": args.n_jobs,
            "SCHEDULER_METRICS_PORT": "0",
            "LOG_FORMAT": "json",
        }
        print(f"one cycle: coins {args.coins}, frequencies {args.freqs}, N_JOBS={args.n_jobs}")
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(ROOT / "retrain_scheduler.py"), "--once", "--no-catchup"],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        wall = time.perf_counter() - start
        print(proc.stdout, end="")
        if proc.returncode not in (0, 1):
            print(proc.stderr[-3000:])
            print(f"cycle exited {proc.returncode}")
            return 1
        history = Path(tmp) / "models" / "runs.jsonl"
        record = json.loads(history.read_text().splitlines()[-1])
    print(f"\n{'series':<22} {'status':<9} {'seconds':>8}  candidate")
    for outcome in record["series"]:
        print(
            f"{outcome['series']:<22} {outcome['status']:<9} {outcome['seconds']:>8.1f}  "
            f"{outcome.get('candidate') or '-'}"
        )
    load = os.getloadavg()[0]
    verdict = "meets" if wall < TARGET_SECONDS else "MISSES"
    print(
        f"\ncycle wall time {wall:.1f} s (scheduler's own record: "
        f"{record['duration_seconds']:.1f} s); target < {TARGET_SECONDS:.0f} s: {verdict}; "
        f"status {record['status']}; load average {load:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
