"""The prediction routes: ``POST /api/v1/predict``, ``POST /api/v1/predict/batch`` and the
simple-pipeline ``GET``/``POST /predict``.

They are the hot paths: :class:`~pipeline.api.hot.HotRoute` checks the API key, validates the
input with the pydantic model of the signature, maps the errors and documents the route from
the same models; the handlers return the forecast bytes pre-serialised by
:mod:`pipeline.api.served`, from the first step after the runtime's clock (``runtime.clock``;
one time for a whole batch) under the runtime's staleness rules. Every v1 answer carries the
``trust`` block of the model that answered, from memory (:mod:`pipeline.api.trust`).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from pipeline.api import fallback
from pipeline.api.deps import ApiRuntime, Runtime, lookup
from pipeline.api.errors import (
    ApiError,
    ForecastUnavailable,
    StepsError,
    forecast_unavailable,
    invalid_input,
    steps_beyond_horizon,
)
from pipeline.api.hot import HotRoute
from pipeline.api.middleware import error_body, request_id_var
from pipeline.api.schemas import (
    CONFIDENCE_LEVELS,
    BatchItem,
    BatchMetrics,
    BatchRequest,
    BatchResponse,
    CompatPredictRequest,
    CompatPredictResponse,
    CompatQuery,
    InvalidRequest,
    PredictRequest,
    PredictResponse,
)
from pipeline.api.slices import LEVELS
from pipeline.api.wire import JsonTemplate, json_list

logger = logging.getLogger(__name__)

router = APIRouter(route_class=HotRoute)

#: ``confidence_level`` (0.8) -> interval level (80).
_LEVEL_OF = dict(zip(CONFIDENCE_LEVELS, LEVELS, strict=True))
_BATCH = JsonTemplate(BatchResponse, ("results", "batch_metrics"))
_ITEM_OK = JsonTemplate(BatchItem, ("index", "result"), ok=True, status=200, error=None)
_ITEM_FAILED = JsonTemplate(BatchItem, ("index", "error", "status"), ok=False, result=None)


@router.get(
    "/predict",
    response_model=CompatPredictResponse,
    tags=["compatibility"],
    summary="Champion forecast in the simple-pipeline format",
)
async def predict_compat_get(runtime: Runtime, query: Annotated[CompatQuery, Query()]) -> bytes:
    return _compat(runtime, query.steps, query.confidence_level, query.coin, query.timeframe)


@router.post(
    "/api/v1/predict",
    response_model=PredictResponse,
    tags=["predict"],
    summary="Forecast a series from its champion (or a named model)",
)
async def predict_v1(runtime: Runtime, body: PredictRequest) -> bytes:
    if body.fallback or (body.fallback is None and runtime._settings().enable_fallback):
        return await _with_fallback(runtime, body, runtime.clock())
    served = lookup(runtime, body.coin, body.vs_currency, body.timeframe, body.model)
    now = runtime.clock()
    payload = served.predict_json(
        body.steps,
        body.levels,
        now=now,
        policy=runtime.staleness,
        trust=runtime.trust.block(served, now),
    )
    runtime.count_prediction(served)
    return payload


async def _with_fallback(runtime: ApiRuntime, body: PredictRequest, now: datetime) -> bytes:
    """The answer of a request that asked for fallbacks (:mod:`pipeline.api.fallback`)."""
    found = await fallback.resolve(runtime, body.coin, body.vs_currency, body.timeframe, body.model)
    trust = runtime.trust.block(found.served, now, found.info)
    payload = found.served.predict_json(
        body.steps, body.levels, now=now, policy=runtime.staleness, trust=trust
    )
    fallback.count(runtime, found.info)
    runtime.count_prediction(found.served)
    return fallback.with_fallback(payload, found.info_json)


@router.post(
    "/predict",
    response_model=CompatPredictResponse,
    tags=["compatibility"],
    summary="Champion forecast in the simple-pipeline format (body: steps, confidence_level)",
)
async def predict_compat_post(runtime: Runtime, body: CompatPredictRequest) -> bytes:
    return _compat(runtime, body.steps, body.confidence_level, body.coin, body.timeframe)


def _compat(
    runtime: ApiRuntime, steps: int, level: float, coin: str | None, freq: str | None
) -> bytes:
    served = lookup(runtime, coin, None, freq, "champion")
    payload = served.compat_json(
        steps, _LEVEL_OF[level], now=runtime.clock(), policy=runtime.staleness
    )
    runtime.count_prediction(served)
    return payload


@router.post(
    "/api/v1/predict/batch",
    response_model=BatchResponse,
    tags=["predict"],
    summary="Several predict requests at once; each item succeeds or carries its own error",
)
async def predict_batch(runtime: Runtime, body: BatchRequest) -> bytes:
    start = time.perf_counter()
    items = body.requests
    maximum = runtime._settings().max_batch_size
    if len(items) > maximum:
        message = f"body.requests: at most {maximum} items per batch, got {len(items)}"
        raise ApiError(
            422,
            "validation_error",
            message,
            details=[{"field": "body.requests", "message": message, "maximum": maximum}],
        )
    now = runtime.clock()  # one time for the whole batch: every item answers the same "now"
    default = runtime._settings().enable_fallback
    parts = [
        await _batch_item_with_fallback(runtime, index, item, now)
        if isinstance(item, PredictRequest)
        and (item.fallback or (item.fallback is None and default))
        else _batch_item(runtime, index, item, now)
        for index, item in enumerate(items)
    ]
    errors = sum(not ok for _, ok in parts)
    metrics = BatchMetrics(
        count=len(items),
        errors=errors,
        duration_ms=round((time.perf_counter() - start) * 1000, 3),
    )
    return _BATCH.fill(json_list([part for part, _ in parts]), metrics.model_dump_json().encode())


def _batch_item(
    runtime: ApiRuntime, index: int, item: PredictRequest | InvalidRequest, now: datetime
) -> tuple[bytes, bool]:
    """One item's answer: its forecast, or the error it would have had alone."""
    try:
        if isinstance(item, InvalidRequest):
            raise invalid_input(item.errors, f"requests.{index}")
        served = lookup(runtime, item.coin, item.vs_currency, item.timeframe, item.model)
        trust = runtime.trust.block(served, now)
        payload = served.predict_json(
            item.steps, item.levels, now=now, policy=runtime.staleness, trust=trust
        )
    except (StepsError, ForecastUnavailable, ApiError) as exc:
        return _batch_error(index, exc), False
    runtime.count_prediction(served)
    return _ITEM_OK.fill(b"%d" % index, payload), True


async def _batch_item_with_fallback(
    runtime: ApiRuntime, index: int, item: PredictRequest, now: datetime
) -> tuple[bytes, bool]:
    """One item that asked for fallbacks: its answer with the fallback block, or its error."""
    try:
        payload = await _with_fallback(runtime, item, now)
    except (StepsError, ForecastUnavailable, ApiError) as exc:
        return _batch_error(index, exc), False
    return _ITEM_OK.fill(b"%d" % index, payload), True


def _batch_error(index: int, exc: StepsError | ForecastUnavailable | ApiError) -> bytes:
    """The failed item's JSON: the error it would have had alone."""
    if isinstance(exc, StepsError):
        error = steps_beyond_horizon(exc, f"requests.{index}.steps")
    elif isinstance(exc, ForecastUnavailable):
        error = forecast_unavailable(exc)
    else:
        error = exc
    err = error_body(
        error.code,
        error.message,
        request_id_var.get() or "-",
        available=error.available,
        details=error.details,
    )
    return _ITEM_FAILED.fill(b"%d" % index, err, b"%d" % error.status)
