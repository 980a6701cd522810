"""Run every benchmark (``make bench``): each ``bench/bench_*.py`` in its own process.

Benchmarks print their own figures; this runner sequences them, shows their output as it comes,
reports failures, and writes what each printed to the documentation page
``docs/results/performance.md`` (with the date, the command and the machine), so the published
figures are always the output of a real run. Pass names to run a subset
(``python bench/run_all.py arima api``): a subset only prints, unless ``--page`` is given.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PAGE = ROOT / "docs" / "results" / "performance.md"

#: What each benchmark measures, with the documentation section that explains its method.
ABOUT = {
    "bench_api.py": "The prediction API under load: throughput, latency, start-up time and memory "
    "(method: [Prediction API](../api.md#performance)).",
    "bench_arima.py": "Our AutoARIMA order selection against `pmdarima.auto_arima` on the same "
    "data (method: [Forecasters](../forecasters.md#benchmark-of-the-arima-order-selection)).",
    "bench_cluster.py": "A cycle of 40 series (20 coins × 1d and 1h) three ways on the same cores: "
    "sequential, local joblib (N_JOBS=2) and a LocalCluster of 2 worker processes; wall time, "
    "per-series cost and the overhead the cluster adds (method: [Scaling out](../scaling.md)).",
    "bench_cycle.py": "One real nightly cycle (`retrain_scheduler.py --once`) on the offline "
    "sample: 2 coins × 2 frequencies, every default candidate, the selection backtest, gate and "
    "promotion; target under 5 minutes.",
    "bench_ledger.py": "The forecast ledger on SQLite: recording one issue of 10 models × 48 "
    "steps (target < 50 ms) and scoring one night of new prices for 10 hourly series × 10 models "
    "with the aggregates refreshed (target < 1 s) (method: [Forecast ledger](../ledger.md)).",
    "bench_load.py": "1,000 concurrent connections (`wrk -c1000`, a mix of predictions, batches "
    "and `/health`) against 2 API workers, steady and while models are swapped and reloaded "
    "every second: socket errors, non-2xx answers, p50/p95/p99 and RSS per worker "
    "(method and settings: [Deployment](../deployment.md#many-concurrent-connections)).",
    "bench_refresh.py": "A refresh of every default model of one hourly series, from one new raw "
    "row to a new issue on disk, next to a full retrain of the same models "
    "(method: [Refresh](../stages/refresh.md)); target well under 5 s.",
    "bench_storage.py": "Models on an object store (moto_server, S3 over HTTP on 127.0.0.1) "
    "against local disk: `POST /api/v1/predict` throughput of both in the same run, and the S3 "
    "requests of one publish and one poll (method: [Scaling out](../scaling.md#object-storage)).",
    "bench_trust.py": "The trust block and the live leaderboard: `GET /api/v1/accuracy` p50/p99 on "
    "an SQLite ledger holding a year of hourly issues of 3 models (target p99 < 10 ms), and "
    "`POST /api/v1/predict` with the trust block against without it in the same run "
    "(method: [Forecast ledger](../ledger.md#trust-block)).",
    "bench_ws.py": "The `/ws` live feed: one forecast event pushed to 200 subscribers, in the hub "
    "and end to end over loopback to 200 real WebSocket clients; target under 50 ms "
    "(method: [Dashboard and live feed](../dashboard.md#performance)).",
    "bench_update.py": "Refit against load + update of each default model on 2,160 hourly "
    "points (method: [Forecasters](../forecasters.md)).",
}


@dataclass(frozen=True)
class BenchRun:
    """One benchmark's outcome: its script name, exit code, wall time and what it printed."""

    name: str
    code: int
    seconds: float
    output: str


def run_script(script: Path) -> BenchRun:
    """Run one benchmark, echoing its standard output line by line while keeping a copy."""
    print(f"\n=== {script.name} ===", flush=True)
    start = time.perf_counter()
    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    seconds = time.perf_counter() - start
    print(f"=== {script.name}: exit {proc.returncode} in {seconds:.1f} s ===", flush=True)
    return BenchRun(script.name, proc.returncode, seconds, "".join(lines))


def _machine() -> str:
    cpus = os.cpu_count() or 0
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return f"{cpus} CPUs"
    return f"{cpus} CPUs, load average {load} (1 / 5 / 15 min) when the page was written"


def render_page(runs: Sequence[BenchRun], *, when: datetime, command: str, machine: str) -> str:
    """The Markdown of the performance page: date, command, machine, then each benchmark."""
    lines = [
        "# Performance",
        "",
        f"Measured on {when:%Y-%m-%d %H:%M} UTC by `make bench` (`{command}`) on {machine}.",
        "The figures depend on what else runs on the cores; each section is the benchmark's own",
        "output. `make bench` rewrites this page.",
        "",
    ]
    for run in runs:
        status = "ok" if run.code == 0 else f"**failed** (exit {run.code})"
        lines += [f"## {run.name}", ""]
        if run.name in ABOUT:
            lines += [ABOUT[run.name], ""]
        lines += [
            f"{status}, {run.seconds:.1f} s wall.",
            "",
            "```text",
            run.output.rstrip("\n") or "(no output)",
            "```",
            "",
        ]
    return "\n".join(lines)


def write_page(path: Path, text: str) -> None:
    """Write the page whole: a temporary sibling, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="benchmarks to run (api, arima, cycle); default all")
    p.add_argument("--page", type=Path, help=f"write the results page here (default {PAGE})")
    p.add_argument("--no-page", action="store_true", help="only print, write no page")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in set(args.names)]
    runs = [run_script(script) for script in scripts]
    failed = [run.name for run in runs if run.code]
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    page = args.page or (None if args.names else PAGE)
    if page is not None and not args.no_page and runs:
        command = shlex.join(["python", "bench/run_all.py", *argv])
        text = render_page(runs, when=datetime.now(UTC), command=command, machine=_machine())
        write_page(page, text)
        print(f"written: {page}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
