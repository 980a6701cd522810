"""The operational routes: models, data, health, status, reload, metrics."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.api.ops_schemas import ModelsResponse
from pipeline.artifacts.store import ArtifactStore
from tests.helpers.serving import (
    BTC_1D,
    BTC_1H,
    Metas,
    TestClient,
    metric_samples,
    processed_file,
    tamper,
    write,
)


def test_models_and_model_info(client: TestClient, metas: Metas) -> None:
    body = ModelsResponse.model_validate(client.get("/api/v1/models").json())
    assert {(m.series, m.model, m.is_champion) for m in body.models} == {
        (BTC_1D.name, "drift", True),
        (BTC_1D.name, "naive", False),
        (BTC_1H.name, "drift", True),
        (BTC_1H.name, "naive", False),
    }
    assert body.champions == {BTC_1D.name: "drift", BTC_1H.name: "drift"}
    info = client.get("/model/info", params={"timeframe": "1h", "model": "naive"}).json()
    assert info["version"] == metas[f"{BTC_1H.name}/naive"].version
    assert info["metrics"] == {"mase": 1.0} and "sigma_log_return" in info["params"]
    assert client.get("/model/info").json()["model"] == "drift"
    assert client.get("/model/info", params={"model": "arima"}).status_code == 404


def test_data_latest(client: TestClient, tmp_path: Path) -> None:
    response = client.get("/data/latest", params={"timeframe": "1h"})
    assert response.status_code == 404
    assert "no processed data for bitcoin-usd-1h" in response.json()["message"]
    processed_file(tmp_path / "data", BTC_1H)
    body = client.get("/data/latest", params={"timeframe": "1h", "limit": 3}).json()
    assert [row["price"] for row in body["rows"]] == [117.0, 118.0, 119.0]
    assert body["rows_total"] == 20 and body["series"] == BTC_1H.name
    assert client.get("/data/latest", params={"limit": 0}).status_code == 422


def test_health_endpoints(client: TestClient, tmp_path: Path) -> None:
    body = client.get("/health").json()
    assert body == {
        "status": "ok",
        "model_loaded": True,
        "models": 4,
        "series": [BTC_1D.name, BTC_1H.name],
    }
    assert client.get("/health/live").json() == {"status": "alive"}
    detailed = client.get("/health/detailed")
    assert detailed.status_code == 200
    components = detailed.json()["components"]
    assert components["models"]["status"] == "ok" and components["disk"]["status"] in {"ok", "low"}
    assert components["data"]["series"][BTC_1D.name]["status"] == "missing"
    assert detailed.json()["status"] == "degraded"
    processed_file(tmp_path / "data", BTC_1H)
    series = client.get("/health/detailed").json()["components"]["data"]["series"]
    assert series[BTC_1H.name]["status"] == "ok"


def test_status_counts(client: TestClient) -> None:
    client.get("/predict", params={"steps": 2})
    client.post("/api/v1/predict", json={"steps": 0})
    body = client.get("/status").json()
    assert body["counts"]["predictions"] == 1 and body["counts"]["errors"] == 1
    assert body["counts"]["requests"] == 2  # the /status request itself is counted after
    assert body["last_prediction_at"] is not None and body["uptime_seconds"] >= 0
    assert body["models"][f"{BTC_1D.name}/drift"]


def test_no_artifacts_health_503_and_docs_still_served(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["model_loaded"] is False
    assert "no model artifacts" in response.json()["reason"]
    assert client.get("/health/live").status_code == 200
    assert client.get("/docs").status_code == 200
    assert "/api/v1/predict" in client.get("/openapi.json").json()["paths"]
    response = client.post("/api/v1/predict", json={})
    assert response.status_code == 503 and "run the pipeline" in response.json()["message"]
    assert client.get("/").json()["service"] == "crypto-forecast-api"
    assert client.get("/health/detailed").status_code == 503
    assert client.get("/api/v1/models").json()["models"] == []


def test_reload_swaps_models(
    metas: Metas, store: ArtifactStore, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(ADMIN_API_KEY="admin-secret")
    new = write(store, BTC_1D, "naive", seed=5, promote=True)
    assert client.post("/api/v1/predict", json={}).json()["model"] == "drift"  # not yet
    response = client.post("/model/reload", headers={"X-Admin-Key": "admin-secret"})
    assert response.status_code == 200
    assert response.json()["outcome"] == "success"
    assert any(c.startswith(f"{BTC_1D.name}/naive") for c in response.json()["changed"])
    body = client.post("/api/v1/predict", json={}).json()
    assert (body["model"], body["model_version"]) == ("naive", new.version)
    reloads = metric_samples(client.get("/metrics").text, "model_reloads_total")
    assert ({"outcome": "success"}, 1.0) in reloads


def test_failed_reload_keeps_the_old_model(
    metas: Metas, store: ArtifactStore, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(ADMIN_API_KEY="admin-secret")
    bad = write(store, BTC_1D, "drift", seed=6, promote=True)
    tamper(store, bad)
    response = client.post("/model/reload", headers={"X-Admin-Key": "admin-secret"})
    assert response.status_code == 500
    body = response.json()
    assert body["outcome"] == "failure" and body["error"] == "reload_failed"
    assert any("checksum mismatch" in f for f in body["failures"])
    assert body["request_id"] == response.headers["x-request-id"]
    served = client.post("/api/v1/predict", json={}).json()
    assert served["model_version"] == metas[f"{BTC_1D.name}/drift"].version
    text = client.get("/metrics").text
    assert ({"outcome": "failure"}, 1.0) in metric_samples(text, "model_reloads_total")


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    client.get("/predict", params={"steps": 2})
    client.get("/predict", params={"steps": 3})
    client.post("/api/v1/predict", json={"timeframe": "1h"})
    client.get("/no/such/path/123")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    requests = metric_samples(text, "http_requests_total")
    assert ({"method": "GET", "route": "/predict", "status": "200"}, 2.0) in requests
    assert ({"method": "POST", "route": "/api/v1/predict", "status": "200"}, 1.0) in requests
    assert ({"method": "GET", "route": "unmatched", "status": "404"}, 1.0) in requests
    assert not any("/no/such" in labels["route"] for labels, _ in requests)
    counts = metric_samples(text, "http_request_duration_seconds_count")
    assert ({"method": "GET", "route": "/predict"}, 2.0) in counts
    predictions = metric_samples(text, "predictions_total")
    assert ({"series": BTC_1D.name, "model": "drift"}, 2.0) in predictions
    assert ({"series": BTC_1H.name, "model": "drift"}, 1.0) in predictions
    info = metric_samples(text, "model_info")
    assert len(info) == 4 and all(labels["version"] for labels, _ in info)
    ages = metric_samples(text, "model_age_seconds")
    assert len(ages) == 4 and all(value >= 0 for _, value in ages)
    assert metric_samples(text, "http_requests_in_progress") == [({}, 1.0)]  # the scrape itself


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_metrics_pass_promtool(client: TestClient) -> None:
    client.get("/predict")
    text = client.get("/metrics").text
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_health_detailed_shows_an_open_circuit(client: TestClient, tmp_path: Path) -> None:
    from pipeline.ingest.breaker import CircuitBreaker

    sources = client.get("/health/detailed").json()["components"]["sources"]
    assert sources["status"] == "ok" and sources["circuits"]["coingecko"]["state"] == "closed"
    CircuitBreaker("coingecko", tmp_path / "data", 1, 900.0).failed("HTTP 503 after 5 attempt(s)")
    body = client.get("/health/detailed").json()
    circuit = body["components"]["sources"]["circuits"]["coingecko"]
    assert body["status"] == "degraded" and body["components"]["sources"]["status"] == "degraded"
    assert circuit["state"] == "open" and circuit["consecutive_failures"] == 1
    assert circuit["last_error"] == "HTTP 503 after 5 attempt(s)" and circuit["retry_at"]
