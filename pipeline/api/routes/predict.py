"""The prediction routes: ``POST /api/v1/predict``, ``POST /api/v1/predict/batch`` and the
simple-pipeline ``GET``/``POST /predict``.

They are the hot paths, so they bypass FastAPI's parameter and dependency handling: each one
checks the API key, validates its body or query with the pydantic models of
:mod:`pipeline.api.schemas` and returns the pre-serialised forecast bytes. The OpenAPI schema
still documents them (``openapi_extra``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from pipeline.api.deps import ApiRuntime, check_api_key, lookup, runtime_of
from pipeline.api.errors import (
    ERRORS,
    JSON,
    ApiError,
    details_message,
    json_response,
    validation_details,
)
from pipeline.api.middleware import error_body, request_id_var
from pipeline.api.registry import StepsError
from pipeline.api.schemas import (
    BatchRequest,
    BatchResponse,
    CompatPredictRequest,
    CompatPredictResponse,
    CompatQuery,
    PredictRequest,
    PredictResponse,
)

logger = logging.getLogger(__name__)


def _invalid(exc: ValidationError, prefix: str) -> ApiError:
    details = validation_details(exc.errors(), prefix=prefix)
    return ApiError(422, "validation_error", details_message(details), details=details)


def _steps_error(exc: StepsError, field: str) -> ApiError:
    detail = {"field": field, "message": str(exc), "minimum": 1, "maximum": exc.maximum}
    return ApiError(422, "steps_beyond_horizon", str(exc), details=[detail])


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {JSON: {"schema": ref}}}}


def _query_doc(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    return [
        {
            "name": name,
            "in": "query",
            "required": name in schema.get("required", ()),
            "schema": prop,
            "description": prop.get("description", ""),
        }
        for name, prop in schema["properties"].items()
    ]


#: Documented by hand, validated in the handler: FastAPI's parameter and dependency solving
#: costs more than the rest of a hot request (see bench/bench_api.py).
HOT: dict[str, Any] = {"security": [{"ApiKey": []}]}


router = APIRouter()


@router.get(
    "/predict",
    response_model=CompatPredictResponse,
    responses=ERRORS,
    tags=["compatibility"],
    summary="Champion forecast in the simple-pipeline format",
    openapi_extra={**HOT, "parameters": _query_doc(CompatQuery)},
)
async def predict_compat_get(request: Request) -> Response:
    runtime = runtime_of(request)
    check_api_key(runtime, request.scope)
    try:
        query = CompatQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise _invalid(exc, "query") from None
    return _compat(
        runtime, query.steps, query.confidence_level, query.coin, query.timeframe, "query"
    )


@router.post(
    "/api/v1/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    tags=["predict"],
    summary="Forecast a series from its champion (or a named model)",
    openapi_extra={**HOT, **_body_doc(PredictRequest)},
)
async def predict_v1(request: Request) -> Response:
    runtime = runtime_of(request)
    check_api_key(runtime, request.scope)
    try:
        body = PredictRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _invalid(exc, "body") from None
    served = lookup(runtime, body.coin, body.vs_currency, body.timeframe, body.model)
    try:
        payload = served.predict_json(body.steps, body.levels)
    except StepsError as exc:
        raise _steps_error(exc, "body.steps") from None
    runtime.count_prediction(served)
    return json_response(payload)


@router.post(
    "/predict",
    response_model=CompatPredictResponse,
    responses=ERRORS,
    tags=["compatibility"],
    summary="Champion forecast in the simple-pipeline format (body: steps, confidence_level)",
    openapi_extra={**HOT, **_body_doc(CompatPredictRequest)},
)
async def predict_compat_post(request: Request) -> Response:
    runtime = runtime_of(request)
    check_api_key(runtime, request.scope)
    try:
        body = CompatPredictRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _invalid(exc, "body") from None
    return _compat(runtime, body.steps, body.confidence_level, body.coin, body.timeframe, "body")


def _compat(
    runtime: ApiRuntime, steps: int, level: float, coin: str | None, freq: str | None, where: str
) -> Response:
    served = lookup(runtime, coin, None, freq, "champion")
    try:
        payload = served.compat_json(steps, 80 if level == 0.8 else 95)
    except StepsError as exc:
        raise _steps_error(exc, f"{where}.steps") from None
    runtime.count_prediction(served)
    return json_response(payload)


def _batch_item(runtime: ApiRuntime, index: int, raw: Any) -> tuple[bytes, bool]:
    try:
        item = PredictRequest.model_validate(raw)
        served = lookup(runtime, item.coin, item.vs_currency, item.timeframe, item.model)
        payload = served.predict_json(item.steps, item.levels)
    except ValidationError as exc:
        error = _invalid(exc, f"requests.{index}")
    except StepsError as exc:
        error = _steps_error(exc, f"requests.{index}.steps")
    except ApiError as exc:
        error = exc
    else:
        runtime.count_prediction(served)
        ok = b'{"index":%d,"ok":true,"status":200,"result":%s,"error":null}' % (index, payload)
        return ok, True
    rid = request_id_var.get() or "-"
    err = error_body(
        error.code, error.message, rid, available=error.available, details=error.details
    )
    failed = b'{"index":%d,"ok":false,"status":%d,"result":null,"error":%s}' % (
        index,
        error.status,
        err,
    )
    return failed, False


@router.post(
    "/api/v1/predict/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    tags=["predict"],
    summary="Several predict requests at once; each item succeeds or carries its own error",
    openapi_extra={**HOT, **_body_doc(BatchRequest)},
)
async def predict_batch(request: Request) -> Response:
    runtime = runtime_of(request)
    check_api_key(runtime, request.scope)
    start = time.perf_counter()
    raw = await request.body()
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ApiError(
            422,
            "validation_error",
            "body: not valid JSON",
            details=[{"field": "body", "message": "not valid JSON"}],
        ) from None
    items = doc.get("requests") if isinstance(doc, dict) else None
    maximum = runtime._settings().max_batch_size
    if not isinstance(items, list) or not items:
        message = "body.requests: a non-empty list of predict requests is required"
        raise ApiError(
            422,
            "validation_error",
            message,
            details=[{"field": "body.requests", "message": message}],
        )
    if len(items) > maximum:
        message = f"body.requests: at most {maximum} items per batch, got {len(items)}"
        raise ApiError(
            422,
            "validation_error",
            message,
            details=[{"field": "body.requests", "message": message, "maximum": maximum}],
        )
    parts = []
    errors = 0
    for index, item in enumerate(items):
        part, ok = _batch_item(runtime, index, item)
        parts.append(part)
        errors += not ok
    elapsed = round((time.perf_counter() - start) * 1000, 3)
    metrics = f'{{"count":{len(items)},"errors":{errors},"duration_ms":{elapsed}}}'.encode()
    return json_response(
        b'{"results":[' + b",".join(parts) + b'],"batch_metrics":' + metrics + b"}"
    )
