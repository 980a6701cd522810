"""A real API process (``api_service.py``) on 127.0.0.1 for the tests that need one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers.paths import ROOT
from tests.helpers.processes import free_port, stop, wait_until


@contextmanager
def api_process(
    folder: Path, env: dict[str, str], *, name: str = "api", headers: dict[str, str] | None = None
) -> Iterator[httpx.Client]:
    """Start the API with ``env`` (``API_URL`` set to itself) in ``folder``; a client of it once
    ``/health/live`` answers. Its output goes to ``folder/<name>.log``; stopped on exit."""
    port = free_port()
    env = {**env, "API_URL": f"http://127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = folder / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "api_service.py"), "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10, headers=headers) as http:
            wait_until(http, "/health/live", proc, log_path)
            yield http
    finally:
        stop(proc)
