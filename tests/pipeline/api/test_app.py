"""The app: CORS, champion polling, the OpenAPI document and the answer without a lifespan."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.api.app import create_app
from pipeline.artifacts.store import ArtifactStore
from tests.helpers.serving import (
    BTC_1H,
    Metas,
    TestClient,
    write,
)


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


def test_without_the_lifespan_the_answers_say_so() -> None:
    client = TestClient(create_app(configure_logs=False))  # no `with`: the lifespan never runs
    assert client.get("/health/live").status_code == 200
    for response in (
        client.post("/api/v1/predict", json={}),
        client.get("/predict"),
        client.get("/api/v1/models"),
    ):
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "not_started"
        assert body["message"] == (
            "the app's lifespan has not run: use `with TestClient(app)` or an ASGI server that "
            "runs lifespan events"
        )
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json()["reason"].startswith("the app's lifespan has not run")
