"""The prediction routes through the real lifespan: answers, validation, errors, batch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.api.schemas import (
    BatchResponse,
    CompatPredictResponse,
    PredictResponse,
)
from pipeline.api.slices import confidence_score
from pipeline.artifacts.store import ArtifactStore
from tests.helpers.serving import (
    BTC_1D,
    BTC_1H,
    ORIGIN,
    FrozenClock,
    Metas,
    TestClient,
    metric_samples,
    read_forecast,
)

HOUR = timedelta(hours=1)


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
    # The clock is frozen at the path's origin: every step is ahead, the issue is brand new.
    assert body.freshness.origin == ORIGIN and body.freshness.issued_at == body.trained_at
    assert (body.freshness.age_seconds, body.freshness.stale) == (0, False)
    assert body.freshness.steps_available == 30


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


def test_every_predict_route_starts_after_the_clock(client: TestClient, clock: FrozenClock) -> None:
    clock.set(ORIGIN + HOUR)  # exactly on the 1h path's first step: that step is past
    body = PredictResponse.model_validate(
        client.post("/api/v1/predict", json={"timeframe": "1h", "steps": 2}).json()
    )
    assert [(p.step, p.timestamp) for p in body.forecasts] == [
        (1, ORIGIN + 2 * HOUR),
        (2, ORIGIN + 3 * HOUR),
    ]
    assert body.prediction_timestamp == ORIGIN + HOUR
    assert (body.freshness.age_seconds, body.freshness.steps_available) == (3600, 47)
    assert body.predicted_price == body.forecasts[0].mean
    compat = CompatPredictResponse.model_validate(
        client.get("/predict", params={"steps": 2, "timeframe": "1h"}).json()
    )
    assert compat.predictions == [p.mean for p in body.forecasts]
    assert compat.confidence_intervals[0].step == 1 and compat.freshness == body.freshness
    posted = client.post("/predict", json={"steps": 2, "timeframe": "1h"}).json()
    assert posted["predictions"] == compat.predictions
    batch = BatchResponse.model_validate(
        client.post(
            "/api/v1/predict/batch",
            json={"requests": [{"timeframe": "1h", "steps": 2}, {"timeframe": "1d", "steps": 1}]},
        ).json()
    )
    hourly, daily = (item.result for item in batch.results)
    assert hourly is not None and hourly.forecasts == body.forecasts
    assert daily is not None and daily.forecasts[0].timestamp == ORIGIN + timedelta(days=1)


def test_the_compat_answer_keeps_its_fields_and_adds_freshness(client: TestClient) -> None:
    body = client.get("/predict", params={"steps": 2}).json()
    old = {"predictions", "timestamp", "model_type", "confidence_intervals", "metadata"}
    assert set(body) == old | {"series", "confidence_level", "freshness"}
    assert set(body["metadata"]) == {"trained_at", "metrics", "version"}
    assert body["freshness"]["origin"] == "2026-11-21T00:00:00Z"


def test_past_the_path_every_route_answers_503_with_the_reason(
    client: TestClient, clock: FrozenClock
) -> None:
    clock.set(ORIGIN + 48 * HOUR)  # the 1h path's last step; the 1d path still has 28 days
    response = client.post("/api/v1/predict", json={"timeframe": "1h"})
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "forecast_expired" and body["request_id"]
    assert body["message"].startswith("bitcoin-usd-1h/drift (")
    assert (
        "the path from origin 2026-11-21T00:00:00Z ended at 2026-11-23T00:00:00Z"
        in (body["message"])
    )
    assert "renewed when a new issue is written by the nightly training" in body["message"]
    compat = client.get("/predict", params={"timeframe": "1h"})
    assert compat.status_code == 503 and compat.json()["message"] == body["message"]
    assert client.post("/predict", json={"timeframe": "1h"}).status_code == 503
    batch = client.post(
        "/api/v1/predict/batch", json={"requests": [{"timeframe": "1h"}, {"timeframe": "1d"}]}
    ).json()
    assert [(item["ok"], item["status"]) for item in batch["results"]] == [
        (False, 503),
        (True, 200),
    ]
    assert batch["results"][0]["error"]["message"] == body["message"]
    daily = batch["results"][1]["result"]["freshness"]
    assert (daily["age_periods"], daily["stale"]) == (2.0, False)  # two periods: not older


def test_stale_settings_flag_and_refuse(
    metas: Metas, make_client: Callable[..., TestClient], clock: FrozenClock
) -> None:
    client = make_client(STALE_AFTER_PERIODS="0.5", STALE_LIMIT_PERIODS="3")
    clock.set(ORIGIN + 13 * HOUR)
    daily = client.post("/api/v1/predict", json={"timeframe": "1d"}).json()["freshness"]
    assert (daily["age_periods"], daily["stale"]) == (0.542, True)  # 13 h > half a day
    hourly = client.post("/api/v1/predict", json={"timeframe": "1h"})
    assert hourly.status_code == 503 and hourly.json()["error"] == "forecast_stale"
    assert "is 13.00 periods of 1h old, beyond STALE_LIMIT_PERIODS=3" in hourly.json()["message"]
    clock.set(ORIGIN + 3 * HOUR)
    assert client.post("/api/v1/predict", json={"timeframe": "1h"}).status_code == 200


def test_metrics_report_the_issue_age_at_the_clock(client: TestClient, clock: FrozenClock) -> None:
    clock.set(ORIGIN + 6 * HOUR)
    text = client.get("/metrics").text
    periods = {
        (labels["series"], labels["model"], labels["champion"]): value
        for labels, value in metric_samples(text, "forecast_issue_age_periods")
    }
    assert periods == {
        (BTC_1D.name, "drift", "true"): 0.25,
        (BTC_1D.name, "naive", "false"): 0.25,
        (BTC_1H.name, "drift", "true"): 6.0,
        (BTC_1H.name, "naive", "false"): 6.0,
    }
    seconds = metric_samples(text, "forecast_issue_age_seconds")
    assert {value for _, value in seconds} == {21600.0}


def test_openapi_documents_the_freshness_of_every_answer(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    fields = schemas["Freshness"]["properties"]
    assert set(fields) == {
        "issued_at",
        "origin",
        "age_seconds",
        "age_periods",
        "stale",
        "steps_available",
    }
    assert all(field.get("description") for field in fields.values())
    assert "STALE_AFTER_PERIODS" in fields["stale"]["description"]
    for name in ("PredictResponse", "CompatPredictResponse"):
        assert "Freshness" in str(schemas[name]["properties"]["freshness"])
    for path, method in (("/api/v1/predict", "post"), ("/predict", "get")):
        assert "503" in spec["paths"][path][method]["responses"]
