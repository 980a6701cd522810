"""api_service.py: usage errors and the real uvicorn process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

import api_service
from tests.helpers.processes import free_port, stop, wait_until
from tests.helpers.serving import (
    BTC_1H,
    build_models,
    metric_samples,
)

ROOT = Path(__file__).resolve().parents[1]


def test_main_rejects_bad_usage() -> None:
    assert api_service.main(["--workers", "0"]) == 2
    assert api_service.main(["--port", "70000"]) == 2


@pytest.mark.slow
def test_real_uvicorn_with_two_workers_serves_over_http(tmp_path: Path) -> None:
    # The MODELS_DIR the server reads; the series end at the current period, since the real
    # clock decides which steps of the paths are still ahead.
    metas = build_models(tmp_path / "models", end=None)
    port = free_port()
    env = {**os.environ, "LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "api_service.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=5) as http:
            wait_until(http, "/health", proc, tmp_path / "server.log")
            for _ in range(20):
                response = http.post("/api/v1/predict", json={"timeframe": "1h", "steps": 2})
                assert response.status_code == 200
                body = response.json()
                assert body["model_version"] == metas[f"{BTC_1H.name}/drift"].version
                first = datetime.fromisoformat(body["forecasts"][0]["timestamp"])
                answered = datetime.fromisoformat(body["prediction_timestamp"])
                assert answered < first <= answered + timedelta(hours=1)  # the next hour
            assert http.get("/predict", params={"steps": 7}).status_code == 200
            text = http.get("/metrics").text
        # Multiprocess mode: the counts add up across both workers, whichever answered.
        requests = metric_samples(text, "http_requests_total")
        assert ({"method": "POST", "route": "/api/v1/predict", "status": "200"}, 20.0) in requests
        assert ({"series": BTC_1H.name, "model": "drift"}, 20.0) in metric_samples(
            text, "predictions_total"
        )
        ages = metric_samples(text, "forecast_issue_age_periods")
        # Built from this period's origin (or the last one's, if a period closed meanwhile).
        assert len(ages) == 4 and all(0 <= value < 2 for _, value in ages)
    finally:
        stop(proc)
        log.close()
    lines = [ln for ln in (tmp_path / "server.log").read_text().splitlines() if ln.startswith("{")]
    access = [json.loads(ln) for ln in lines if '"pipeline.access"' in ln]
    assert access and all(
        {"request_id", "route", "status", "duration_ms"} <= set(a) for a in access
    )
    assert "Traceback" not in (tmp_path / "server.log").read_text()
