"""The prediction API through its real lifespan, on small real artifacts made per test."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

import api_service
from pipeline.api.app import create_app
from pipeline.api.registry import confidence_score
from pipeline.api.schemas import (
    BatchResponse,
    CompatPredictResponse,
    ModelsResponse,
    PredictResponse,
)
from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from pipeline.config import get_settings
from tests.helpers.processes import free_port, stop, wait_until
from tests.helpers.serving import (
    BTC_1D,
    BTC_1H,
    TestClient,
    build_models,
    read_forecast,
    tamper,
    write,
)

ROOT = Path(__file__).resolve().parents[1]
Metas = dict[str, ArtifactMetadata]


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def metas(models_dir: Path) -> Metas:
    return build_models(models_dir)


@pytest.fixture
def make_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., TestClient]]:
    """``make_client(ENV=value, ...)`` -> a started TestClient (lifespan run) on a fresh app."""
    clients: list[TestClient] = []

    def make(**env: str) -> TestClient:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        client = TestClient(create_app(configure_logs=False))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(metas: Metas, make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out.append((sample.labels, sample.value))
    return out


def write_processed(data_dir: Path, series_name: str, n: int = 20) -> None:
    folder = data_dir / "processed"
    folder.mkdir(parents=True, exist_ok=True)
    ds = pd.date_range(end=pd.Timestamp.now(tz="UTC").floor("h"), periods=n, freq="1h")
    pd.DataFrame(
        {"ds": ds.strftime("%Y-%m-%dT%H:%M:%SZ"), "price": 100.0 + np.arange(n), "imputed": False}
    ).to_csv(folder / f"{series_name}.csv", index=False)


# -- predict --------------------------------------------------------------------------------------
def test_predict_v1_answers_from_the_champion_path(
    client: TestClient, metas: Metas, models_dir: Path
) -> None:
    response = client.post("/api/v1/predict", json={"timeframe": "1d", "steps": 7})
    assert response.status_code == 200
    body = PredictResponse.model_validate(response.json())
    meta = metas[f"{BTC_1D.name}/drift"]
    frame = read_forecast(ArtifactStore(models_dir), meta)
    assert (body.series, body.model, body.model_version) == (BTC_1D.name, "drift", meta.version)
    assert body.is_champion and body.horizon == 30 and len(body.forecasts) == 7
    assert [p.mean for p in body.forecasts] == pytest.approx(frame["mean"][:7].tolist())
    assert body.predicted_price == pytest.approx(frame["mean"][0])
    assert body.last_price == pytest.approx(meta.last_price)
    assert body.data_end == meta.training.last_ds
    expected = confidence_score(
        frame["mean"][0], frame["lower_95"][0], frame["upper_95"][0], meta.last_price
    )
    assert body.confidence_score == pytest.approx(expected, abs=1e-6)
    assert response.headers["content-type"] == "application/json"


def test_predict_v1_by_model_name_and_levels(client: TestClient, metas: Metas) -> None:
    response = client.post(
        "/api/v1/predict", json={"timeframe": "1h", "steps": 3, "model": "naive", "levels": [80]}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "naive" and body["is_champion"] is False
    assert body["model_version"] == metas[f"{BTC_1H.name}/naive"].version
    point = body["forecasts"][0]
    assert point["lower_95"] is None and point["lower_80"] < point["mean"] < point["upper_80"]


@pytest.mark.parametrize(
    ("payload", "field", "allowed"),
    [
        ({"timeframe": "2h"}, "body.timeframe", ["1h", "4h", "1d"]),
        ({"steps": 0}, "body.steps", None),
        ({"levels": [90]}, "body.levels.0", [80, 95]),
        ({"coin": "Bit Coin"}, "body.coin", None),
        ({"colour": "red"}, "body.colour", None),
    ],
)
def test_predict_v1_validation_names_the_field(
    client: TestClient, payload: dict[str, Any], field: str, allowed: list[Any] | None
) -> None:
    response = client.post("/api/v1/predict", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error" and field in body["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    detail = next(d for d in body["details"] if d["field"] == field)
    if allowed is not None:
        assert detail["allowed"] == allowed
    if field == "body.steps":
        assert detail["minimum"] == 1 and "(range: 1..)" in body["message"]


def test_steps_beyond_the_horizon_say_the_maximum(client: TestClient) -> None:
    response = client.post("/api/v1/predict", json={"timeframe": "1d", "steps": 31})
    assert response.status_code == 422
    assert response.json()["error"] == "steps_beyond_horizon"
    assert "the maximum is 30" in response.json()["message"]
    assert response.json()["details"][0] == {
        "field": "body.steps",
        "message": response.json()["message"],
        "minimum": 1,
        "maximum": 30,
    }
    assert client.get("/predict", params={"steps": 49, "timeframe": "1h"}).status_code == 422


def test_unknown_coin_timeframe_or_model_is_404_listing_what_exists(client: TestClient) -> None:
    response = client.post("/api/v1/predict", json={"coin": "ethereum"})
    assert response.status_code == 404
    assert response.json()["available"] == [BTC_1D.name, BTC_1H.name]
    response = client.post("/api/v1/predict", json={"timeframe": "4h"})
    assert response.status_code == 404 and "bitcoin-usd-4h" in response.json()["message"]
    response = client.post("/api/v1/predict", json={"model": "prophet"})
    assert response.status_code == 404
    assert response.json()["available"] == ["champion", "drift", "naive"]


def test_compat_predict_get_and_post(client: TestClient, metas: Metas, models_dir: Path) -> None:
    response = client.get("/predict", params={"steps": 3})
    assert response.status_code == 200
    body = CompatPredictResponse.model_validate(response.json())
    frame = read_forecast(ArtifactStore(models_dir), metas[f"{BTC_1D.name}/drift"])
    # Defaults: the first configured series (bitcoin 1d), 95% intervals.
    assert body.series == BTC_1D.name and body.model_type == "drift"
    assert body.predictions == pytest.approx(frame["mean"][:3].tolist())
    assert [c.upper for c in body.confidence_intervals] == pytest.approx(
        frame["upper_95"][:3].tolist()
    )
    assert body.metadata.version == metas[f"{BTC_1D.name}/drift"].version
    response = client.post(
        "/predict", json={"steps": 2, "confidence_level": 0.8, "timeframe": "1h"}
    )
    assert response.status_code == 200
    assert response.json()["series"] == BTC_1H.name and response.json()["confidence_level"] == 0.8
    response = client.post("/predict", json={"steps": 2, "confidence_level": 0.9})
    assert response.status_code == 422
    assert response.json()["details"][0]["allowed"] == [0.8, 0.95]
    assert client.get("/predict", params={"steps": 101}).status_code == 422
    assert client.get("/predict", params={"confidence_level": 0.5}).status_code == 422


def test_batch_items_succeed_or_carry_their_own_error(client: TestClient) -> None:
    requests = [
        {"timeframe": "1d", "steps": 2},
        {"timeframe": "1h", "steps": 99},
        {"coin": "dogecoin"},
        {"timeframe": "5m"},
        {"timeframe": "1h", "model": "naive", "steps": 1},
    ]
    response = client.post("/api/v1/predict/batch", json={"requests": requests})
    assert response.status_code == 200
    body = BatchResponse.model_validate(response.json())
    assert [item.ok for item in body.results] == [True, False, False, False, True]
    assert [item.status for item in body.results] == [200, 422, 404, 422, 200]
    assert body.batch_metrics.count == 5 and body.batch_metrics.errors == 3
    assert body.results[3].error is not None
    assert "requests.3.timeframe" in body.results[3].error.message
    assert body.results[1].error is not None and "maximum is 48" in body.results[1].error.message
    assert body.results[4].result is not None and body.results[4].result.model == "naive"


def test_batch_envelope_errors(metas: Metas, make_client: Callable[..., TestClient]) -> None:
    client = make_client(MAX_BATCH_SIZE="2")
    response = client.post("/api/v1/predict/batch", json={"requests": [{}, {}, {}]})
    assert response.status_code == 422 and "at most 2 items" in response.json()["message"]
    response = client.post(
        "/api/v1/predict/batch", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["details"][0]["field"] == "body"
    assert client.post("/api/v1/predict/batch", json={"requests": []}).status_code == 422
    assert client.post("/api/v1/predict/batch", json=[1, 2]).status_code == 422


# -- models, data, health -------------------------------------------------------------------------
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
    write_processed(tmp_path / "data", BTC_1H.name)
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
    write_processed(tmp_path / "data", BTC_1H.name)
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


def test_openapi_documents_schemas_and_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert (
        "probability of the predicted direction"
        in (schemas["PredictResponse"]["properties"]["confidence_score"]["description"])
    )
    assert schemas["PredictRequest"]["examples"]
    batch = spec["paths"]["/api/v1/predict/batch"]["post"]
    ref = batch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schemas[ref.rsplit("/", 1)[1]]["properties"]["requests"]["items"]
    get_predict = spec["paths"]["/predict"]["get"]
    assert {p["name"] for p in get_predict["parameters"]} >= {"steps", "coin", "timeframe"}
    assert get_predict["security"] == [{"ApiKey": []}]
    assert "X-API-Key" in json.dumps(spec["components"]["securitySchemes"])


# -- reload ---------------------------------------------------------------------------------------
def test_reload_swaps_models(
    metas: Metas, models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(ADMIN_API_KEY="admin-secret")
    store = ArtifactStore(models_dir)
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
    metas: Metas, models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(ADMIN_API_KEY="admin-secret")
    store = ArtifactStore(models_dir)
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


def test_polling_picks_up_a_new_champion(
    metas: Metas, models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(MODEL_POLL_SECONDS="0.05")
    new = write(ArtifactStore(models_dir), BTC_1H, "naive", seed=7, promote=True)
    deadline = time.monotonic() + 10
    version = None
    while time.monotonic() < deadline:
        version = client.post("/api/v1/predict", json={"timeframe": "1h"}).json()["model_version"]
        if version == new.version:
            break
        time.sleep(0.05)
    assert version == new.version


# -- safety ---------------------------------------------------------------------------------------
def test_api_key_and_admin_key(metas: Metas, make_client: Callable[..., TestClient]) -> None:
    client = make_client(API_KEY="k-123")
    assert client.post("/api/v1/predict", json={}).status_code == 401
    assert client.post("/api/v1/predict", json={}, headers={"X-API-Key": "nope"}).status_code == 401
    assert (
        client.post("/api/v1/predict", json={}, headers={"X-API-Key": "k-123"}).status_code == 200
    )
    assert client.get("/predict").status_code == 401
    assert client.get("/predict", headers={"X-API-Key": "k-123"}).status_code == 200
    assert client.get("/api/v1/models").status_code == 401
    assert client.get("/health").status_code == 200  # probes stay open
    response = client.post("/model/reload", headers={"X-API-Key": "k-123"})
    assert response.status_code == 403 and "ADMIN_API_KEY" in response.json()["message"]
    admin = make_client(ADMIN_API_KEY="adm")
    assert admin.post("/model/reload").status_code == 401
    assert admin.post("/model/reload", headers={"X-Admin-Key": "wrong"}).status_code == 401
    assert admin.post("/model/reload", headers={"X-Admin-Key": "adm"}).status_code == 200


def test_rate_limit_answers_429_with_retry_after(
    metas: Metas, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(RATE_LIMIT_PER_MINUTE="3")
    codes = [client.get("/predict").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = client.get("/predict")
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    assert response.json()["error"] == "rate_limited"
    assert client.get("/health/live").status_code == 200  # probes are not limited
    assert client.get("/metrics").status_code == 200


def test_body_size_limit_413(metas: Metas, make_client: Callable[..., TestClient]) -> None:
    client = make_client(MAX_BODY_BYTES="1024")
    big = {"requests": [{"steps": 1}] * 200}
    response = client.post("/api/v1/predict/batch", json=big)
    assert response.status_code == 413 and "1024 bytes" in response.json()["message"]
    assert response.json()["request_id"] == response.headers["x-request-id"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        yield b'{"requests": ['
        for _ in range(200):
            yield b'{"steps": 1},'
        yield b'{"steps": 1}]}'

    response = client.post(
        "/api/v1/predict/batch", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    response = client.post(
        "/api/v1/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_request_id_security_headers_and_access_log(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline.access"):
        response = client.get("/predict", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "access-control-allow-origin" not in response.headers
    record = next(r for r in caplog.records if r.name == "pipeline.access")
    assert record.__dict__["request_id"] == "abc-123"
    assert record.__dict__["route"] == "/predict" and record.__dict__["status"] == 200
    generated = client.get("/health/live", headers={"X-Request-ID": "bad id!"})
    assert len(generated.headers["x-request-id"]) == 32  # an unsafe id is replaced
    assert "content-security-policy" not in client.get("/docs").headers  # Swagger UI needs scripts


def test_cors_is_off_by_default_and_configurable(
    client: TestClient, metas: Metas, make_client: Callable[..., TestClient]
) -> None:
    origin = {"Origin": "https://dash.example"}
    assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    allowed = make_client(CORS_ORIGINS="https://dash.example")
    response = allowed.get("/health", headers=origin)
    assert response.headers["access-control-allow-origin"] == "https://dash.example"
    preflight = allowed.options(
        "/api/v1/predict",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200


def test_internal_errors_hide_the_trace(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.api import registry as serving

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret /internal/path")

    monkeypatch.setattr(serving.Registry, "find", boom)
    with caplog.at_level(logging.ERROR):
        response = client.post("/api/v1/predict", json={})
    assert response.status_code == 500
    body = response.json()
    assert (
        body["error"] == "internal_error" and body["request_id"] == response.headers["x-request-id"]
    )
    assert "secret" not in response.text and "Traceback" not in response.text
    logged = next(r for r in caplog.records if "secret /internal/path" in (r.exc_text or ""))
    assert logged.__dict__["request_id"] == body["request_id"]  # every line of the request has it


# -- metrics --------------------------------------------------------------------------------------
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


# -- the real server ------------------------------------------------------------------------------
def test_main_rejects_bad_usage() -> None:
    assert api_service.main(["--workers", "0"]) == 2
    assert api_service.main(["--port", "70000"]) == 2


@pytest.mark.slow
def test_real_uvicorn_with_two_workers_serves_over_http(metas: Metas, tmp_path: Path) -> None:
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
                assert response.json()["model_version"] == metas[f"{BTC_1H.name}/drift"].version
            assert http.get("/predict", params={"steps": 7}).status_code == 200
            text = http.get("/metrics").text
        # Multiprocess mode: the counts add up across both workers, whichever answered.
        requests = metric_samples(text, "http_requests_total")
        assert ({"method": "POST", "route": "/api/v1/predict", "status": "200"}, 20.0) in requests
        assert ({"series": BTC_1H.name, "model": "drift"}, 20.0) in metric_samples(
            text, "predictions_total"
        )
    finally:
        stop(proc)
        log.close()
    lines = [ln for ln in (tmp_path / "server.log").read_text().splitlines() if ln.startswith("{")]
    access = [json.loads(ln) for ln in lines if '"pipeline.access"' in ln]
    assert access and all(
        {"request_id", "route", "status", "duration_ms"} <= set(a) for a in access
    )
    assert "Traceback" not in (tmp_path / "server.log").read_text()
