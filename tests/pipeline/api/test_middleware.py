"""The serving middleware: rate limit, body limit, request id, headers, access log, 500s."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest

from pipeline.api.middleware import RateLimiter, error_body
from pipeline.api.schemas import ErrorResponse
from tests.helpers.serving import (
    Metas,
    TestClient,
)


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


def test_internal_errors_hide_the_trace(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.api import registry

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret /internal/path")

    monkeypatch.setattr(registry.Registry, "find", boom)
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


def test_rate_limiter_refills_continuously() -> None:
    limiter = RateLimiter(per_minute=2)
    assert limiter.take("a", now=0.0) == 0.0 and limiter.take("a", now=0.0) == 0.0
    assert limiter.take("a", now=0.0) == pytest.approx(30.0)  # one token per 30 s
    assert limiter.take("b", now=0.0) == 0.0  # per client
    assert limiter.take("a", now=30.0) == 0.0


def test_error_body_leaves_out_empty_fields() -> None:
    body = json.loads(error_body("rate_limited", "slow down", "rid-1", available=None, details=[]))
    assert body == {
        "error": "rate_limited",
        "message": "slow down",
        "request_id": "rid-1",
        "details": [],
    }
    assert ErrorResponse.model_validate(body).request_id == "rid-1"
