"""The prediction routes through the real lifespan: answers, validation, errors, batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.api.schemas import (
    BatchResponse,
    CompatPredictResponse,
    PredictResponse,
)
from pipeline.api.served import confidence_score
from pipeline.artifacts.store import ArtifactStore
from tests.helpers.serving import (
    BTC_1D,
    BTC_1H,
    Metas,
    TestClient,
    read_forecast,
)


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
