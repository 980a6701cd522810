"""HotRoute: the OpenAPI entry comes from the handler's models; requests skip FastAPI's solving."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel, Field

from pipeline.api.app import create_app
from pipeline.api.deps import ApiRuntime, Runtime
from pipeline.api.errors import StepsError, add_error_handlers
from pipeline.api.hot import HotRoute, hot_input
from pipeline.api.schemas import (
    BatchRequest,
    BatchResponse,
    CompatPredictRequest,
    CompatPredictResponse,
    CompatQuery,
    PredictRequest,
    PredictResponse,
)
from tests.helpers.serving import TestClient

HOT_ROUTES = [
    ("post", "/api/v1/predict", PredictRequest, PredictResponse),
    ("post", "/api/v1/predict/batch", BatchRequest, BatchResponse),
    ("post", "/predict", CompatPredictRequest, CompatPredictResponse),
    ("get", "/predict", CompatQuery, CompatPredictResponse),
]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(configure_logs=False).openapi()


def _ref(content: dict[str, Any]) -> str:
    ref: str = content["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[1]


@pytest.mark.parametrize(("method", "path", "request_model", "response_model"), HOT_ROUTES)
def test_hot_openapi_entries_come_from_the_models(
    spec: dict[str, Any],
    method: str,
    path: str,
    request_model: type[BaseModel],
    response_model: type[BaseModel],
) -> None:
    operation = spec["paths"][path][method]
    schemas = spec["components"]["schemas"]
    model_schema = request_model.model_json_schema()
    if method == "post":
        assert operation["requestBody"]["required"] is True
        name = _ref(operation["requestBody"]["content"])
        assert name == request_model.__name__
        assert set(schemas[name]["properties"]) == set(model_schema["properties"])
        assert schemas[name].get("required", []) == model_schema.get("required", [])
    else:
        params = operation["parameters"]
        assert [p["name"] for p in params] == list(request_model.model_fields)
        assert all(p["in"] == "query" and p["required"] is False for p in params)
        assert {p["name"]: p["description"] for p in params} == {
            name: field.description for name, field in request_model.model_fields.items()
        }
    assert _ref(operation["responses"]["200"]["content"]) == response_model.__name__
    assert {_ref(operation["responses"][code]["content"]) for code in ("401", "404", "422")} == {
        "ErrorResponse"
    }
    assert operation["security"] == [{"ApiKey": []}]


def test_the_app_keeps_fastapis_openapi_generation() -> None:
    app = create_app(configure_logs=False)
    assert type(app).openapi is FastAPI.openapi and "openapi" not in vars(app)


def test_hot_input_reads_the_signature() -> None:
    async def from_body(runtime: Runtime, body: PredictRequest) -> bytes:
        return b""

    async def from_query(runtime: Runtime, query: Annotated[CompatQuery, Query()]) -> bytes:
        return b""

    async def not_a_model(runtime: Runtime, steps: int) -> bytes:
        return b""

    async def no_runtime(body: PredictRequest) -> bytes:
        return b""

    assert hot_input(from_body) == ("body", PredictRequest)
    assert hot_input(from_query) == ("query", CompatQuery)
    with pytest.raises(TypeError, match="the input 'steps' must be a pydantic model"):
        hot_input(not_a_model)
    with pytest.raises(TypeError, match=r"takes \(runtime, input\)"):
        hot_input(no_runtime)


class Echo(BaseModel):
    steps: int = Field(ge=1)


def _toy_app(api_key: bytes | None) -> FastAPI:
    router = APIRouter(route_class=HotRoute)

    @router.post("/echo", response_model=Echo)
    async def echo(runtime: Runtime, body: Echo) -> bytes:
        if body.steps > 5:
            raise StepsError(f"steps={body.steps}: the maximum is 5", 5)
        return body.model_dump_json().encode()

    app = FastAPI()
    runtime = ApiRuntime()
    runtime.api_key = api_key
    app.state.runtime = runtime
    app.include_router(router)
    add_error_handlers(app)
    return app


def test_a_hot_route_checks_the_key_validates_and_maps_errors() -> None:
    with TestClient(_toy_app(b"k")) as client:
        assert client.post("/echo", json={"steps": 2}).status_code == 401
        ok = client.post("/echo", json={"steps": 2}, headers={"X-API-Key": "k"})
        assert ok.status_code == 200 and ok.json() == {"steps": 2}
        assert ok.headers["content-type"] == "application/json"
        bad = client.post("/echo", json={"steps": 0}, headers={"X-API-Key": "k"}).json()
        assert bad["error"] == "validation_error" and bad["details"][0]["field"] == "body.steps"
        beyond = client.post("/echo", json={"steps": 9}, headers={"X-API-Key": "k"})
        assert beyond.status_code == 422
        assert beyond.json()["details"] == [
            {
                "field": "body.steps",
                "message": "steps=9: the maximum is 5",
                "minimum": 1,
                "maximum": 5,
            }
        ]
        spec = client.get("/openapi.json").json()
    assert _ref(spec["paths"]["/echo"]["post"]["requestBody"]["content"]) == "Echo"
    assert spec["paths"]["/echo"]["post"]["security"] == [{"ApiKey": []}]
