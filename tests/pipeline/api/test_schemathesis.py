"""Schemathesis against the OpenAPI document of a real uvicorn server on 127.0.0.1.

The schemathesis CLI (``st run``) reads ``/openapi.json`` from the server and tests every
operation: its documented examples, the coverage cases (boundaries, missing and wrong-typed
fields) and a bounded number of generated requests per operation, seeded so that every run sends
the same cases. Each response must be no server error (5xx), carry a documented status code and
content type, match its documented body schema, and a request without the API key must be refused.

Not checked: "a schema-valid request is accepted" and "an invalid one is refused", because some
limits are known only at run time (``steps`` beyond a model's horizon is a documented 422) and
lenient parsing is deliberate (``"fallback": 0`` means false).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.config import ADMIN_KEY_HEADER
from tests.helpers.processes import free_port, stop, wait_until
from tests.helpers.serving import BTC_1D, BTC_1H, build_models, processed_file

ROOT = Path(__file__).resolve().parents[3]
API_KEY = "schemathesis-user-key"
ADMIN_KEY = "schemathesis-admin-key"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "ignored_auth",
)
#: Generated requests per operation, beside the examples, coverage and stateful cases (~1 min).
MAX_EXAMPLES = 15
SEED = 20261202


@pytest.fixture
def api_url(tmp_path: Path) -> Iterator[str]:
    """A real ``api_service.py`` (1 worker, rate limit off, both keys set) serving the test
    models (bitcoin 1d and 1h, naive and drift, ending now) and processed data for both."""
    build_models(tmp_path / "models", end=None)
    for series in (BTC_1D, BTC_1H):
        processed_file(tmp_path / "data", series, n=50)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(tmp_path / "data"),
        "MODELS_DIR": str(tmp_path / "models"),
        "REPORTS_DIR": str(tmp_path / "reports"),
        "API_KEY": API_KEY,
        "ADMIN_API_KEY": ADMIN_KEY,
        "RATE_LIMIT_PER_MINUTE": "0",
        "LOG_FORMAT": "json",
        # Never the network, whatever a request starts.
        "SOURCE": "sample",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "api_service.py"), "--host", "127.0.0.1"]
            + ["--port", str(port), "--workers", "1"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                wait_until(http, "/health", proc, log_path)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(proc)
    assert "Traceback" not in log_path.read_text("utf-8")


@pytest.mark.slow
def test_api_honours_its_openapi_document(api_url: str, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "run",
        f"{api_url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--header",
        f"X-API-Key: {API_KEY}",
        "--header",
        f"{ADMIN_KEY_HEADER}: {ADMIN_KEY}",
        # Starting jobs runs whole training cycles in child processes: the jobs tests cover it.
        "--exclude-name",
        "POST /admin/jobs",
    ]
    # In tmp_path: schemathesis' own files (.schemathesis/, reports) stay out of the checkout.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    # Every operation of the document but the excluded one was tested, none skipped for an error.
    operations = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report)
    assert operations is not None, report
    selected, total, tested = map(int, operations.groups())
    assert selected == tested == total - 1 >= 14, report
    assert re.search(r"Test cases:\s+\d+ generated", report), report
