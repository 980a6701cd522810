"""1,000 concurrent connections against the real API (2 uvicorn workers), with model swaps.

A short run of the load benchmark (``bench/bench_load.py``: ``wrk -c1000`` mixing single
predictions, batches and ``/health``, then the same while the champion is swapped and
``POST /model/reload`` called every second). It asserts what must hold on any machine: no socket
error (connect, read, write, timeout), no non-2xx answer, every reload answered 200. Timings
are the benchmark's business (``make bench``), never asserted here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
def test_1000_connections_with_model_swaps_fail_no_request(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_load.py"), "--duration", "4",
         "--connections", "1000", "--workers", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    steady, swapping = figures["phases"]
    for phase in (steady, swapping):
        assert phase["requests"] > 0, phase  # how many is the benchmark's business
        errors = {k: phase[k] for k in ("connect", "read", "write", "timeout", "non_2xx")}
        assert errors == dict.fromkeys(errors, 0), (phase["label"], errors, proc.stdout)
    assert swapping["reloads"] and set(swapping["reloads"]) == {200}, swapping["reloads"]
    assert len(figures["rss_mb"]) == 2
