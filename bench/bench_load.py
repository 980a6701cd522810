"""Benchmark: 1,000 concurrent connections against the prediction API, with and without model swaps.

    .venv/bin/python bench/bench_load.py [--duration 10] [--connections 1000] [--workers 2]

Builds champion artifacts for bitcoin 1d and 1h (as ``bench_api.py`` does), starts the real
service (``api_service.py``, 2 uvicorn workers) on 127.0.0.1 with the rate limit off (one load
client would be limited at once), and drives it with ``wrk -t2 -c1000 --timeout 5s`` through a
Lua script that mixes ``POST /api/v1/predict`` (6 in 10), ``POST /api/v1/predict/batch`` of 10
items (1 in 10) and ``GET /health`` (3 in 10). Two phases of ``--duration`` s: steady, then the
same load while the benchmark promotes the other model of each series and calls
``POST /model/reload`` (admin key) every second, so both workers swap models under load
(``MODEL_POLL_SECONDS=1`` for the worker a reload request does not reach).

Reported per phase: requests/s, p50/p95/p99 latency, socket errors (connect, read, write,
timeout), non-2xx answers, and the RSS of each worker at the end. Target: no socket error and no
non-2xx answer in either phase, every reload answered 200; p95 < 100 ms and RSS < 512 MB per
worker are the design targets (a 2-core machine shares its cores with the load client). Exit 0
unless the service fails to start (``--strict``: exit 1 when a target is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench_api import build_artifacts, ensure_wrk, free_port, rss_mb, wait_ready, worker_pids

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.artifacts.store import ArtifactStore  # noqa: E402
from pipeline.config import ADMIN_KEY_HEADER  # noqa: E402
from pipeline.series import SeriesId  # noqa: E402

ADMIN_KEY = "bench-load-admin-key"
SERIES = [SeriesId("bitcoin", "usd", "1d"), SeriesId("bitcoin", "usd", "1h")]

#: The request mix (wrk Lua), whose ``done`` hook prints the figures as one JSON line.
MIX_LUA = Path(__file__).resolve().with_name("load_mix.lua")


@dataclass
class Phase:
    label: str
    figures: dict[str, float]
    reloads: list[int] = field(default_factory=list)

    @property
    def socket_errors(self) -> int:
        return int(sum(self.figures[k] for k in ("connect", "read", "write", "timeout")))

    @property
    def rps(self) -> float:
        return self.figures["requests"] / self.figures["seconds"]


def run_load(
    wrk: str, base: str, lua: Path, args: argparse.Namespace, label: str, timeout: str = "5s"
) -> Phase:
    """One bounded ``wrk`` run of the mix; its figures from the ``done`` hook."""
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s"]
    cmd += ["--timeout", timeout, "-s", str(lua), base]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=args.duration + 60, check=True
    ).stdout
    match = re.search(r"^LOAD (\{.*\})$", out, re.M)
    if match is None:
        raise SystemExit(f"wrk printed no figures:\n{out}")
    return Phase(label, json.loads(match.group(1)))


class Swapper(threading.Thread):
    """Every second: promote the other model of each series, then ``POST /model/reload``."""

    def __init__(self, base: str, models_dir: Path) -> None:
        super().__init__(daemon=True)
        self.base, self.store = base, ArtifactStore(models_dir)
        self.stop = threading.Event()
        self.codes: list[int] = []

    def run(self) -> None:
        while not self.stop.wait(1.0):
            for series in SERIES:
                pointer = self.store.champion(series)
                assert pointer is not None
                other = "naive" if pointer.model == "drift" else "drift"
                version = self.store.latest(series, other)
                assert version is not None
                self.store.promote(series, other, version, "load benchmark swap")
            try:  # a new connection each time, so either worker may take it
                response = httpx.post(
                    f"{self.base}/model/reload", headers={ADMIN_KEY_HEADER: ADMIN_KEY}, timeout=10
                )
                self.codes.append(response.status_code)
            except httpx.HTTPError:
                self.codes.append(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per phase")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120 or not 1 <= args.connections <= 10000:
        parser.error("--duration must be 1..120 s and --connections 1..10000")
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        folder = Path(tmp)
        build_artifacts(folder / "models")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MODELS_DIR": str(folder / "models"),
            "DATA_DIR": str(folder / "data"),
            "RATE_LIMIT_PER_MINUTE": "0",
            "ADMIN_API_KEY": ADMIN_KEY,
            "MODEL_POLL_SECONDS": "1",
            "LOG_FORMAT": "json",
        }
        for key in ("API_KEY", "PROMETHEUS_MULTIPROC_DIR"):
            env.pop(key, None)
        cmd = [sys.executable, str(ROOT / "api_service.py"), "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--workers", str(args.workers)]
        lua = MIX_LUA
        with (folder / "server.log").open("wb") as log:
            proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_ready(base, proc)
                warm = argparse.Namespace(**{**vars(args), "duration": 2})
                run_load(wrk, base, lua, warm, "warm-up")
                steady = run_load(wrk, base, lua, args, "steady")
                swapper = Swapper(base, folder / "models")
                swapper.start()
                try:
                    swapping = run_load(wrk, base, lua, args, "reload every second")
                finally:
                    swapper.stop.set()
                    swapper.join(timeout=15)
                swapping.reloads = swapper.codes
                rss = {pid: rss_mb(pid) for pid in worker_pids(proc.pid)}
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return report(args, [steady, swapping], rss)


def report(args: argparse.Namespace, phases: list[Phase], rss: dict[int, float]) -> int:
    print(
        f"Load benchmark: {args.workers} uvicorn workers, wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s --timeout 5s, mix of POST /api/v1/predict "
        f"(60%), GET /health (30%), batch of 10 (10%); {os.cpu_count()} cores shared with wrk"
    )
    header = ("phase", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "sock err", "non-2xx")
    print("{:<22}{:>9}{:>9}{:>9}{:>9}{:>9}{:>10}{:>9}".format(*header))
    for p in phases:
        f = p.figures
        print(
            f"{p.label:<22}{p.rps:>9.0f}{f['p50_ms']:>9.1f}{f['p95_ms']:>9.1f}{f['p99_ms']:>9.1f}"
            f"{f['max_ms']:>9.0f}{p.socket_errors:>10}{int(f['non_2xx']):>9}"
        )
        if p.socket_errors:
            kinds = ", ".join(f"{k} {int(f[k])}" for k in ("connect", "read", "write", "timeout"))
            print(f"    socket errors: {kinds}")
    reloads = phases[-1].reloads
    ok_reloads = sum(code == 200 for code in reloads)
    print(
        f"model swaps + POST /model/reload during the second phase: {ok_reloads}/{len(reloads)} 200"
    )
    for pid, mb in rss.items():
        print(f"RSS of worker {pid}: {mb:.0f} MB")
    checks = [
        ("no socket errors", all(p.socket_errors == 0 for p in phases)),
        ("no non-2xx answers", all(p.figures["non_2xx"] == 0 for p in phases)),
        ("every reload answered 200", bool(reloads) and ok_reloads == len(reloads)),
        ("p95 < 100 ms", all(p.figures["p95_ms"] < 100 for p in phases)),
        ("RSS < 512 MB per worker", all(mb < 512 for mb in rss.values())),
    ]
    missed = [name for name, ok in checks if not ok]
    if args.json:
        payload = {
            "phases": [{"label": p.label, **p.figures, "reloads": p.reloads} for p in phases],
            "rss_mb": rss,
            "missed": missed,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    print(f"{'all targets met' if not missed else 'missed: ' + '; '.join(missed)}")
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    raise SystemExit(main())
