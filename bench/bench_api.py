"""Benchmark: the prediction API under load, on this machine, in one run.

    .venv/bin/python bench/bench_api.py [--duration 5] [--rounds 2] [--connections 50] [--workers 2]

Builds champion artifacts for bitcoin 1d and 1h (naive and drift on a simulated series) in a
temporary models folder, starts the real service (``api_service.py``, uvicorn, 2 workers) on
127.0.0.1, and drives it with ``wrk`` (installed with apt-get when missing and running as root):
requests/s and p50/p99 latency (medians of ``--rounds`` interleaved runs of ``--duration`` s, so
10 s per endpoint by default) for ``GET /predict?steps=7``, ``POST /api/v1/predict`` and
``GET /health/live``, the predict/health-live throughput ratio, the latency of a batch of 50,
the start-up time to ready (``/health`` 200) and the RSS of each worker. Every request goes to
127.0.0.1 and every run is bounded by ``--duration``. Access logs stay on (JSON to a file), the
rate limit is off (one benchmark client would be limited at once).

Targets (2-core machine): predict throughput >= 80% of health-live; p99 < 25 ms at 50
connections; batch of 50 < 20 ms; ready < 5 s; RSS < 300 MB per worker. Exit 0 unless the
service fails to start (``--strict``: exit 1 when a target is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.artifacts.store import ArtifactStore  # noqa: E402
from pipeline.forecasters import make_forecaster  # noqa: E402
from pipeline.series import SeriesId  # noqa: E402

PREDICT_BODY = {"coin": "bitcoin", "timeframe": "1h", "steps": 7}
POST_LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass
class WrkResult:
    label: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    errors: str


def simulated_prices(n: int, freq: str, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    returns = 0.0003 + 0.02 * rng.standard_t(df=5, size=n) / np.sqrt(5 / 3)
    index = pd.date_range(end=pd.Timestamp.now(tz="UTC").floor(freq), periods=n, freq=freq)
    return pd.Series(30000.0 * np.exp(np.cumsum(returns)), index=index.rename("ds"), name="y")


def build_artifacts(models_dir: Path) -> None:
    store = ArtifactStore(models_dir)
    for freq, pandas_freq, horizon, n in (("1d", "1D", 30, 1000), ("1h", "1h", 48, 2000)):
        series = SeriesId("bitcoin", "usd", freq)
        y = simulated_prices(n, pandas_freq, seed=len(freq))
        for name in ("naive", "drift"):
            meta = store.write_version(
                series, make_forecaster(name).fit(y), y, horizon=horizon, data_source="sample"
            )
        store.promote(series, "drift", meta.version, "benchmark")


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: install it (apt-get install -y wrk) and run again")
    print("installing wrk (apt-get install -y wrk) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is still missing after apt-get install")
    return found


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(
    wrk: str, label: str, url: str, args: argparse.Namespace, lua: Path | None = None
) -> WrkResult:
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    if lua is not None:
        cmd += ["-s", str(lua)]
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, timeout=args.duration + 60, check=True
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return WrkResult(
        label=label,
        rps=float(rps.group(1)) if rps else float("nan"),
        p50_ms=_ms(p50.group(1)) if p50 else float("nan"),
        p99_ms=_ms(p99.group(1)) if p99 else float("nan"),
        requests=int(total.group(1)) if total else 0,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        errors=errors.group(0) if errors else "",
    )


def combine(runs: list[WrkResult]) -> WrkResult:
    """Several rounds of one endpoint: total requests over total time, median percentiles."""
    return WrkResult(
        label=runs[0].label,
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        requests=sum(r.requests for r in runs),
        non_2xx=sum(r.non_2xx for r in runs),
        errors="; ".join(r.errors for r in runs if re.search(r"[1-9]", r.errors)),
    )


def worker_pids(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent:
            cmdline = (entry / "cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                pids.append(int(entry.name))
    return sorted(pids) or [parent]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (load-independent start-up cost)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> float:
    start = time.perf_counter()
    with httpx.Client(base_url=base, timeout=2) as http:
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                raise SystemExit(f"the service exited with code {proc.returncode}")
            try:
                if http.get("/health").status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise SystemExit(f"the service was not ready within {timeout:.0f} s")


def batch_latency(base: str, n_requests: int) -> dict[str, float]:
    items = [
        {"timeframe": "1d" if i % 2 else "1h", "steps": 7, "model": "champion"} for i in range(50)
    ]
    client_ms, server_ms = [], []
    with httpx.Client(base_url=base, timeout=5) as http:
        for i in range(n_requests + 20):
            start = time.perf_counter()
            response = http.post("/api/v1/predict/batch", json={"requests": items})
            elapsed = (time.perf_counter() - start) * 1000
            response.raise_for_status()
            body = response.json()
            if body["batch_metrics"]["errors"]:
                raise SystemExit(f"batch items failed: {body['results'][0]}")
            if i >= 20:  # warm-up excluded
                client_ms.append(elapsed)
                server_ms.append(body["batch_metrics"]["duration_ms"])
    client_ms.sort()
    return {
        "p50_ms": statistics.median(client_ms),
        "p99_ms": client_ms[min(len(client_ms) - 1, int(0.99 * len(client_ms)))],
        "server_p50_ms": statistics.median(server_ms),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved runs per endpoint (medians reported)"
    )
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    parser.add_argument("--batches", type=int, default=200, help="sequential batch requests")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--log", type=Path, help="keep the server's log at this path")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120 or not 1 <= args.rounds <= 10:
        parser.error("--duration must be 1..120 s and --rounds 1..10")
    wrk = ensure_wrk()
    args.load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        folder = Path(tmp)
        build_artifacts(folder / "models")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MODELS_DIR": str(folder / "models"),
            "DATA_DIR": str(folder / "data"),
            "RATE_LIMIT_PER_MINUTE": "0",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
        }
        for key in ("API_KEY", "PROMETHEUS_MULTIPROC_DIR", "MODEL_POLL_SECONDS"):
            env.pop(key, None)
        log_path = folder / "server.log"
        cmd = [
            sys.executable,
            str(ROOT / "api_service.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ]
        print(f"starting: {' '.join(cmd[1:])}", flush=True)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                ready = wait_ready(base, proc)
                startup_cpu = {pid: cpu_seconds(pid) for pid in [proc.pid, *worker_pids(proc.pid)]}
                print(f"ready in {ready:.2f} s; wrk runs of {args.duration} s ...", flush=True)
                lua = folder / "post.lua"
                lua.write_text(POST_LUA.format(body=json.dumps(PREDICT_BODY)), "utf-8")
                run_wrk(
                    wrk,
                    "warm-up",
                    f"{base}/health/live",
                    argparse.Namespace(
                        threads=args.threads, connections=args.connections, duration=2
                    ),
                )
                targets = [
                    ("GET /health/live", f"{base}/health/live", None),
                    ("GET /predict?steps=7", f"{base}/predict?steps=7", None),
                    ("POST /api/v1/predict", f"{base}/api/v1/predict", lua),
                ]
                rounds: dict[str, list[WrkResult]] = {label: [] for label, _, _ in targets}
                for _ in range(args.rounds):  # interleaved, so a change of load hits all three
                    for label, url, script in targets:
                        rounds[label].append(run_wrk(wrk, label, url, args, script))
                results = [combine(runs) for runs in rounds.values()]
                batch = batch_latency(base, args.batches)
                pids = worker_pids(proc.pid)
                rss = {pid: rss_mb(pid) for pid in pids}
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                if args.log:
                    shutil.copyfile(log_path, args.log)
        return report(args, ready, results, batch, rss, startup_cpu)


def report(
    args: argparse.Namespace,
    ready: float,
    results: list[WrkResult],
    batch: dict[str, float],
    rss: dict[int, float],
    startup_cpu: dict[int, float],
) -> int:
    health, predict_get, predict_post = results
    ratio_get = predict_get.rps / health.rps if health.rps else float("nan")
    ratio_post = predict_post.rps / health.rps if health.rps else float("nan")
    print()
    print(
        f"API benchmark: {args.workers} uvicorn workers, wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s x {args.rounds} interleaved rounds "
        f"(medians), {os.cpu_count()} cores"
    )
    print(f"load average before/after: {args.load_before} / {load_average()}")
    header = ("endpoint", "req/s", "p50 ms", "p99 ms", "requests", "non-2xx")
    print("{:<24}{:>10}{:>10}{:>10}{:>11}{:>9}".format(*header))
    for r in results:
        print(
            f"{r.label:<24}{r.rps:>10.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}"
            f"{r.requests:>11}{r.non_2xx:>9}"
        )
        if r.errors:
            print(f"    {r.errors}")
    worst_p99 = max(r.p99_ms for r in results)
    checks = [
        ("GET /predict / health-live throughput", f"{ratio_get:.0%}", ratio_get >= 0.8, ">= 80%"),
        ("POST predict / health-live throughput", f"{ratio_post:.0%}", ratio_post >= 0.8, ">= 80%"),
        ("worst p99 at 50 connections", f"{worst_p99:.1f} ms", worst_p99 < 25, "< 25 ms"),
        ("batch of 50 (p50, client)", f"{batch['p50_ms']:.1f} ms", batch["p50_ms"] < 20, "< 20 ms"),
        ("batch of 50 (p99, client)", f"{batch['p99_ms']:.1f} ms", batch["p99_ms"] < 20, "< 20 ms"),
        ("batch of 50 (p50, in handler)", f"{batch['server_p50_ms']:.2f} ms", True, "info"),
        ("start-up to ready", f"{ready:.2f} s", ready < 5, "< 5 s"),
    ]
    cpu = ", ".join(f"{sec:.1f}" for sec in startup_cpu.values())
    checks.append(("start-up CPU s (parent, workers)", cpu, True, "info"))
    for pid, mb in rss.items():
        checks.append((f"RSS of worker {pid}", f"{mb:.0f} MB", mb < 300, "< 300 MB"))
    print()
    print(f"{'figure':<40}{'value':>12}  {'target':<10}result")
    for name, value, ok, target in checks:
        result = "-" if target == "info" else ("ok" if ok else "MISSED")
        print(f"{name:<40}{value:>12}  {target:<10}{result}")
    missed = [name for name, _, ok, target in checks if not ok and target != "info"]
    if args.json:
        payload: dict[str, Any] = {
            "wrk": [r.__dict__ for r in results],
            "ratio_get": ratio_get,
            "ratio_post": ratio_post,
            "batch": batch,
            "ready_seconds": ready,
            "startup_cpu_seconds": startup_cpu,
            "rss_mb": rss,
            "missed": missed,
            "load_average_before": args.load_before,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    print(f"\n{'all targets met' if not missed else 'missed: ' + '; '.join(missed)}")
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    raise SystemExit(main())
