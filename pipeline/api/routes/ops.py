"""The operational routes: root, health, status, metrics, model listing and info, latest data
and the admin reload.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pipeline import __version__
from pipeline.api.deps import ADMIN_KEY, API_KEY, NOT_STARTED, lookup, runtime_of
from pipeline.api.errors import ERRORS, ApiError, NotServedError, dump_response, json_response
from pipeline.api.ops_schemas import (
    DataLatestResponse,
    HealthResponse,
    ModelsResponse,
    ModelSummary,
    ReloadResponse,
    RootResponse,
)
from pipeline.api.schemas import COIN_REGEX, MODEL_REGEX, ErrorResponse, Timeframe
from pipeline.errors import PipelineError, UsageError
from pipeline.ingest.breaker import CLOSED, PROVIDERS, read_state
from pipeline.logs import Redactor, secret_values
from pipeline.series import SeriesId
from pipeline.storage.sync import describe

logger = logging.getLogger(__name__)

SERVICE_NAME = "crypto-forecast-api"
_HEALTH_LIVE = b'{"status":"alive"}'

#: Its own router so that the app can put the liveness probe first, ahead of the predict
#: routes (see :func:`pipeline.api.app.create_app`).
live_router = APIRouter()


@live_router.get("/health/live", tags=["health"], summary="The process is up")
async def health_live() -> Response:
    return json_response(_HEALTH_LIVE)


router = APIRouter()


def _scrubbed(request: Request, texts: list[str]) -> list[str]:
    """Error texts shown to clients, without the values of the secret settings."""
    if not texts:
        return texts
    settings = runtime_of(request).settings
    clean = Redactor(secret_values(settings) if settings is not None else ())
    return [clean(text) for text in texts]


@router.get("/", response_model=RootResponse, tags=["meta"], summary="Service name and links")
async def root() -> Response:
    return dump_response(
        {
            "service": SERVICE_NAME,
            "version": __version__,
            "docs": "/docs",
            "links": {
                "predict": "/api/v1/predict",
                "batch": "/api/v1/predict/batch",
                "models": "/api/v1/models",
                "compat_predict": "/predict",
                "model_info": "/model/info",
                "data_latest": "/data/latest",
                "health": "/health",
                "health_detailed": "/health/detailed",
                "status": "/status",
                "metrics": "/metrics",
                "openapi": "/openapi.json",
                "dashboard": "/dashboard",
                "feed": "/ws",
            },
        }
    )


CoinQuery = Annotated[
    str | None,
    Query(pattern=COIN_REGEX, description="default: the first configured coin"),
]
TimeframeQuery = Annotated[Timeframe | None, Query(description="default: the first configured one")]


@router.get(
    "/api/v1/models",
    response_model=ModelsResponse,
    responses={401: ERRORS[401]},
    dependencies=API_KEY,
    tags=["models"],
)
async def list_models(request: Request) -> Response:
    """Every loaded series and model with version, metrics and the champion flag."""
    return json_response(runtime_of(request).registry_holder().registry.models_json)


@router.get("/model/info", response_model=ModelSummary, responses=ERRORS, tags=["models"])
async def model_info(
    request: Request,
    coin: CoinQuery = None,
    timeframe: TimeframeQuery = None,
    model: Annotated[str, Query(pattern=MODEL_REGEX)] = "champion",
) -> Response:
    """Metadata of one served model (default: the first configured series' champion)."""
    runtime = runtime_of(request)
    served = lookup(runtime, coin, None, timeframe, model)
    return json_response(served.summary_json)


@router.get("/data/latest", response_model=DataLatestResponse, responses=ERRORS, tags=["data"])
async def data_latest(
    request: Request,
    coin: CoinQuery = None,
    timeframe: TimeframeQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> Response:
    """The last ``limit`` processed observations of a series (data/processed/<series>.csv)."""
    runtime = runtime_of(request)
    default_coin, default_freq = runtime.default_series()
    try:
        series = SeriesId(
            coin or default_coin, runtime._settings().vs_currency, timeframe or default_freq
        )
    except UsageError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    assert runtime.data is not None
    try:
        return dump_response(await anyio.to_thread.run_sync(runtime.data.latest, series, limit))
    except NotServedError as exc:
        raise ApiError(404, "not_found", str(exc), available=exc.available) from None
    except PipelineError as exc:
        raise ApiError(503, "data_unavailable", str(exc)) from None


@router.post(
    "/model/reload",
    response_model=ReloadResponse,
    responses={**ERRORS, 403: {"model": ErrorResponse, "description": "ADMIN_API_KEY unset"}},
    dependencies=ADMIN_KEY,
    tags=["admin"],
    summary="Reload the artifacts; swap atomically; failures keep the previous versions",
)
async def reload_models(request: Request) -> Response:
    """Reloads this worker (with several workers, use polling: MODEL_POLL_SECONDS)."""
    result = await runtime_of(request).reload()
    body = {
        "outcome": result.outcome,
        "message": result.message,
        "models": result.models,
        "changed": result.changed,
        "failures": _scrubbed(request, result.failures),
        "duration_ms": round(result.duration_ms, 3),
        "pid": os.getpid(),
    }
    if result.outcome == "failure":
        body.update(error="reload_failed", request_id=request.state.request_id)
        return dump_response(body, 500)
    return dump_response(body)


@router.get(
    "/health",
    response_model=HealthResponse,
    tags=["health"],
    responses={503: {"model": HealthResponse}},
)
async def health(request: Request) -> Response:
    """200 when at least one model is loaded, else 503 with the reason."""
    runtime = runtime_of(request)
    registry = runtime.holder.registry if runtime.holder else None
    if registry is None or registry.empty:
        reason = (
            NOT_STARTED
            if registry is None
            else "no model artifacts are loaded: run the pipeline (make pipeline) and then "
            "POST /model/reload"
        )
        if registry is not None and registry.errors:
            reason += f"; load errors: {'; '.join(_scrubbed(request, registry.errors))}"
        return dump_response(
            {
                "status": "unavailable",
                "model_loaded": False,
                "models": 0,
                "series": [],
                "reason": reason,
            },
            503,
        )
    return dump_response(
        {
            "status": "ok",
            "model_loaded": True,
            "models": len(registry.models),
            "series": registry.series_names(),
        }
    )


@router.get("/health/detailed", tags=["health"], summary="Models, data freshness and disk")
async def health_detailed(request: Request) -> Response:
    runtime = runtime_of(request)
    holder = runtime.registry_holder()
    settings = runtime._settings()
    registry = holder.registry
    data = runtime.data
    assert data is not None

    def gather() -> dict[str, Any]:
        freshness = {s.name: data.freshness(s) for s in settings.series()}
        try:
            usage = shutil.disk_usage(settings.models_dir if settings.models_dir.exists() else ".")
            fraction = usage.free / usage.total if usage.total else 0.0
            disk = {
                "status": "ok" if fraction >= 0.05 else "low",
                "free_bytes": usage.free,
                "total_bytes": usage.total,
                "free_fraction": round(fraction, 4),
            }
        except OSError as exc:
            disk = {"status": "unknown", "error": type(exc).__name__}
        breakers = {p: read_state(settings.data_dir, p) for p in PROVIDERS}
        sources = {
            p: {
                **b.as_json(settings.breaker_cooldown_seconds),
                "last_error": _scrubbed(request, [b.last_error])[0] if b.last_error else None,
            }
            for p, b in breakers.items()
        }
        store = describe(holder.store.root)  # an s3:// URL (no credentials) or a local folder
        return {"data": freshness, "disk": disk, "sources": sources, "store": store}

    extra = await anyio.to_thread.run_sync(gather)
    ages = [m.age_seconds for m in registry.models.values()]
    models = {
        "status": "ok"
        if not registry.empty and not registry.errors
        else ("unavailable" if registry.empty else "degraded"),
        "count": len(registry.models),
        "champions": registry.champions,
        "load_errors": _scrubbed(request, registry.errors),
        "oldest_age_seconds": round(max(ages), 1) if ages else None,
        "loaded_at": registry.loaded_at.isoformat(),
        "store": extra["store"],
    }
    data_ok = all(v["status"] == "ok" for v in extra["data"].values())
    sources_ok = all(v["state"] == CLOSED for v in extra["sources"].values())
    if registry.empty:
        status, code = "unavailable", 503
    elif models["status"] == "ok" and data_ok and sources_ok and extra["disk"]["status"] == "ok":
        status, code = "ok", 200
    else:
        status, code = "degraded", 200
    return dump_response(
        {
            "status": status,
            "components": {
                "models": models,
                "data": {"status": "ok" if data_ok else "degraded", "series": extra["data"]},
                "disk": extra["disk"],
                "sources": {
                    "status": "ok" if sources_ok else "degraded",
                    "circuits": extra["sources"],
                },
            },
        },
        code,
    )


@router.get("/status", tags=["health"], summary="Uptime, versions, last prediction, counts")
async def status(request: Request) -> Response:
    runtime = runtime_of(request)
    registry = runtime.holder.registry if runtime.holder else None
    return dump_response(
        {
            "service": SERVICE_NAME,
            "version": __version__,
            "code_version": runtime.code_version,
            "python": platform.python_version(),
            "pid": os.getpid(),
            "started_at": datetime.fromtimestamp(runtime.started_at, UTC).isoformat(),
            "uptime_seconds": round(time.time() - runtime.started_at, 3),
            "models": {
                f"{s}/{m}": served.version
                for (s, m), served in sorted((registry.models if registry else {}).items())
            },
            "champions": registry.champions if registry else {},
            "last_prediction_at": runtime.last_prediction_at,
            "counts": {
                "requests": runtime.requests,
                "errors": runtime.errors,
                "predictions": runtime.predictions,
                "reloads": runtime.reloads,
            },
            "note": "counts are for the worker process that answered",
        }
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,  # documents text/plain; the handler sets the exact type
    tags=["health"],
    summary="Prometheus metrics (text format)",
)
async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    settings = runtime.settings
    if settings is not None and settings.prometheus_multiproc_dir is not None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(settings.prometheus_multiproc_dir))
        for collector in runtime.model_collectors():
            registry.register(collector)
    else:
        registry = runtime.metrics.registry
    data = await anyio.to_thread.run_sync(generate_latest, registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
