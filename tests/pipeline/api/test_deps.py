"""What the routes share: the API-key and admin-key checks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipeline.api.deps import ApiRuntime, api_key_of, check_api_key
from pipeline.api.errors import ApiError
from tests.helpers.serving import (
    Metas,
    TestClient,
)


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


def test_one_api_key_check_for_hot_and_plain_routes() -> None:
    runtime = ApiRuntime()
    check_api_key(runtime, None)  # no API_KEY set: open
    runtime.api_key = b"k-123"
    check_api_key(runtime, b"k-123")
    for provided in (None, b"nope", b""):
        with pytest.raises(ApiError, match="missing or invalid X-API-Key header") as info:
            check_api_key(runtime, provided)
        assert info.value.status == 401
    scope = {"headers": [(b"content-type", b"x"), (b"x-api-key", b"k-123")]}
    assert api_key_of(scope) == b"k-123" and api_key_of({"headers": []}) is None
