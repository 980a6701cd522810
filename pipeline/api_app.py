"""The FastAPI application: routes, error handlers and the lifespan that loads the models.

``create_app()`` reads nothing and loads nothing; the lifespan reads the settings, loads the
registry (:mod:`pipeline.serving`) and starts the optional champion-pointer polling. Hot
endpoints return pre-serialised JSON (``Response`` with bytes), documented by the pydantic
models of :mod:`pipeline.api_models`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import platform
import re
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline import __version__
from pipeline.api_middleware import (
    ApiMetrics,
    ModelCollector,
    RateLimiter,
    ServingMiddleware,
    error_body,
    install_request_id_filter,
    request_id_var,
)
from pipeline.api_models import (
    BatchRequest,
    BatchResponse,
    CompatPredictRequest,
    CompatPredictResponse,
    CompatQuery,
    DataLatestResponse,
    ErrorResponse,
    HealthResponse,
    ModelsResponse,
    ModelSummary,
    PredictRequest,
    PredictResponse,
    ReloadResponse,
    RootResponse,
    Timeframe,
)
from pipeline.artifacts import ArtifactStore, code_version
from pipeline.config import Settings, get_settings
from pipeline.errors import PipelineError, UsageError
from pipeline.logs import configure_logging
from pipeline.series import SeriesId
from pipeline.serving import (
    DataCache,
    NotServedError,
    RegistryHolder,
    ReloadResult,
    ServedModel,
    StepsError,
)

logger = logging.getLogger(__name__)

SERVICE_NAME = "crypto-forecast-api"
JSON = "application/json"
ALLOWED = {"timeframe": ["1h", "4h", "1d"], "levels": [80, 95], "confidence_level": [0.8, 0.95]}
_HEALTH_LIVE = b'{"status":"alive"}'


class ApiError(Exception):
    """An error answered as JSON: status, code, message, optional available/details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        available: list[str] | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.available = available
        self.details = details
        self.headers = headers


class ApiRuntime:
    """Everything the routes and the middleware share; filled by the lifespan."""

    def __init__(self) -> None:
        self.metrics = ApiMetrics()
        self.settings: Settings | None = None
        self.holder: RegistryHolder | None = None
        self.data: DataCache | None = None
        self.limiter: RateLimiter | None = None
        self.rate_limit_per_minute = 0
        self.max_body_bytes = 65536
        self.api_key: bytes | None = None
        self.admin_key: bytes | None = None
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.code_version = __version__
        self.requests = 0
        self.errors = 0
        self.predictions = 0
        self.last_prediction_at: str | None = None
        self.reload_lock = asyncio.Lock()
        self.reloads = {"success": 0, "failure": 0}
        self._prediction_counters: dict[tuple[str, str], Any] = {}
        self.metrics.registry.register(ModelCollector(self.served_models))

    def configure(self, settings: Settings) -> None:
        self.settings = settings
        self.holder = RegistryHolder(ArtifactStore(settings.models_dir))
        self.data = DataCache(settings.data_dir)
        self.rate_limit_per_minute = settings.rate_limit_per_minute
        self.limiter = (
            RateLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None
        )
        self.max_body_bytes = settings.max_body_bytes
        self.api_key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        self.admin_key = (
            settings.admin_api_key.get_secret_value().encode() if settings.admin_api_key else None
        )
        self.code_version = code_version()

    def served_models(self) -> list[ServedModel]:
        if self.holder is None:
            return []
        return list(self.holder.registry.models.values())

    def count_request(self, status: int) -> None:
        self.requests += 1
        if status >= 400:
            self.errors += 1

    def count_prediction(self, served: ServedModel) -> None:
        key = (served.series.name, served.model)
        child = self._prediction_counters.get(key)
        if child is None:
            child = self._prediction_counters[key] = self.metrics.predictions.labels(*key)
        child.inc()
        self.predictions += 1
        self.last_prediction_at = datetime.now(UTC).isoformat(timespec="milliseconds")

    def default_series(self) -> tuple[str, str]:
        settings = self._settings()
        return settings.coins[0], settings.frequencies[0]

    def _settings(self) -> Settings:
        if self.settings is None:
            raise ApiError(503, "starting", "the service is starting; retry in a moment")
        return self.settings

    def registry_holder(self) -> RegistryHolder:
        if self.holder is None:
            raise ApiError(503, "starting", "the service is starting; retry in a moment")
        return self.holder

    async def reload(self) -> ReloadResult:
        holder = self.registry_holder()
        async with self.reload_lock:
            result = await anyio.to_thread.run_sync(holder.reload)
        self.reloads[result.outcome] += 1
        self.metrics.reloads.labels(outcome=result.outcome).inc()
        return result


def runtime_of(request: Request) -> ApiRuntime:
    runtime: ApiRuntime = request.app.state.runtime
    return runtime


# -- security -------------------------------------------------------------------------------------
api_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    auto_error=False,
    description="needed when API_KEY is set",
)
admin_key_header = APIKeyHeader(
    name="X-Admin-Key",
    scheme_name="AdminKey",
    auto_error=False,
    description="ADMIN_API_KEY; admin endpoints are off without it",
)


def _matches(provided: str | None, expected: bytes) -> bool:
    return provided is not None and hmac.compare_digest(provided.encode(), expected)


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    expected = runtime_of(request).api_key
    if expected is not None and not _matches(key, expected):
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid X-API-Key header",
            headers={"WWW-Authenticate": "APIKey"},
        )


async def require_admin_key(
    request: Request, key: Annotated[str | None, Security(admin_key_header)]
) -> None:
    expected = runtime_of(request).admin_key
    if expected is None:
        raise ApiError(403, "admin_disabled", "admin endpoints are disabled: set ADMIN_API_KEY")
    if not _matches(key, expected):
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid X-Admin-Key header",
            headers={"WWW-Authenticate": "APIKey"},
        )


API_KEY = [Security(require_api_key)]
ADMIN_KEY = [Security(require_admin_key)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        401: "missing or wrong API key",
        404: "unknown coin, timeframe or model (lists what is available)",
        413: "request body too large",
        422: "invalid input (names the field and the allowed values) or steps beyond the horizon",
        429: "rate limited (see Retry-After)",
    }.items()
}


# -- helpers --------------------------------------------------------------------------------------
def _lookup(
    runtime: ApiRuntime, coin: str | None, vs: str | None, freq: str | None, model: str
) -> ServedModel:
    """The served model: a dict lookup on the hot path; a full check explains a miss."""
    registry = runtime.registry_holder().registry
    settings = runtime._settings()
    coin = coin or settings.coins[0]
    vs = vs or settings.vs_currency
    freq = freq or settings.frequencies[0]
    served = registry.find(f"{coin}-{vs}-{freq}", model)
    if served is not None:
        return served
    if registry.empty:
        raise ApiError(
            503,
            "no_models",
            "no models are loaded: run the pipeline (make pipeline), then POST /model/reload",
        )
    try:
        series = SeriesId(coin, vs, freq)
    except UsageError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    try:
        return registry.get(series, model)
    except NotServedError as exc:
        raise ApiError(404, "not_found", str(exc), available=exc.available) from None


def _check_api_key(runtime: ApiRuntime, scope: Scope) -> None:
    """The API-key check of the hot endpoints (no FastAPI dependency: it costs ~0.1 ms)."""
    expected = runtime.api_key
    if expected is None:
        return
    provided = next((v for k, v in scope["headers"] if k == b"x-api-key"), None)
    if provided is None or not hmac.compare_digest(provided, expected):
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid X-API-Key header",
            headers={"WWW-Authenticate": "APIKey"},
        )


def _invalid(exc: ValidationError, prefix: str) -> ApiError:
    details = validation_details(exc.errors(), prefix=prefix)
    return ApiError(422, "validation_error", _details_message(details), details=details)


def _steps_error(exc: StepsError, field: str) -> ApiError:
    detail = {"field": field, "message": str(exc), "minimum": 1, "maximum": exc.maximum}
    return ApiError(422, "steps_beyond_horizon", str(exc), details=[detail])


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON)


def _dump(data: Any, status: int = 200) -> Response:
    return _json(json.dumps(data, separators=(",", ":"), default=str).encode(), status)


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


# -- routes ---------------------------------------------------------------------------------------
router = APIRouter()


@router.get("/health/live", tags=["health"], summary="The process is up")
async def health_live() -> Response:
    return _json(_HEALTH_LIVE)


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
    _check_api_key(runtime, request.scope)
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
    _check_api_key(runtime, request.scope)
    try:
        body = PredictRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _invalid(exc, "body") from None
    served = _lookup(runtime, body.coin, body.vs_currency, body.timeframe, body.model)
    try:
        payload = served.predict_json(body.steps, body.levels)
    except StepsError as exc:
        raise _steps_error(exc, "body.steps") from None
    runtime.count_prediction(served)
    return _json(payload)


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
    _check_api_key(runtime, request.scope)
    try:
        body = CompatPredictRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _invalid(exc, "body") from None
    return _compat(runtime, body.steps, body.confidence_level, body.coin, body.timeframe, "body")


def _compat(
    runtime: ApiRuntime, steps: int, level: float, coin: str | None, freq: str | None, where: str
) -> Response:
    served = _lookup(runtime, coin, None, freq, "champion")
    try:
        payload = served.compat_json(steps, 80 if level == 0.8 else 95)
    except StepsError as exc:
        raise _steps_error(exc, f"{where}.steps") from None
    runtime.count_prediction(served)
    return _json(payload)


def _batch_item(runtime: ApiRuntime, index: int, raw: Any) -> tuple[bytes, bool]:
    try:
        item = PredictRequest.model_validate(raw)
        served = _lookup(runtime, item.coin, item.vs_currency, item.timeframe, item.model)
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
    _check_api_key(runtime, request.scope)
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
    return _json(b'{"results":[' + b",".join(parts) + b'],"batch_metrics":' + metrics + b"}")


@router.get("/", response_model=RootResponse, tags=["meta"], summary="Service name and links")
async def root() -> Response:
    return _dump(
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
            },
        }
    )


CoinQuery = Annotated[
    str | None,
    Query(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="default: the first configured coin"),
]
TimeframeQuery = Annotated[Timeframe | None, Query(description="default: the first configured one")]


@router.get("/api/v1/models", response_model=ModelsResponse, dependencies=API_KEY, tags=["models"])
async def list_models(request: Request) -> Response:
    """Every loaded series and model with version, metrics and the champion flag."""
    return _json(runtime_of(request).registry_holder().registry.models_json)


@router.get("/model/info", response_model=ModelSummary, responses=ERRORS, tags=["models"])
async def model_info(
    request: Request,
    coin: CoinQuery = None,
    timeframe: TimeframeQuery = None,
    model: Annotated[str, Query(pattern=r"^[a-z0-9_-]{1,64}$")] = "champion",
) -> Response:
    """Metadata of one served model (default: the first configured series' champion)."""
    runtime = runtime_of(request)
    served = _lookup(runtime, coin, None, timeframe, model)
    return _dump(served.summary)


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
        return _dump(await anyio.to_thread.run_sync(runtime.data.latest, series, limit))
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
        "failures": result.failures,
        "duration_ms": round(result.duration_ms, 3),
        "pid": os.getpid(),
    }
    if result.outcome == "failure":
        body.update(error="reload_failed", request_id=request.state.request_id)
        return _dump(body, 500)
    return _dump(body)


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
            "the service is starting"
            if registry is None
            else "no model artifacts are loaded: run the pipeline (make pipeline) and then "
            "POST /model/reload"
        )
        if registry is not None and registry.errors:
            reason += f"; load errors: {'; '.join(registry.errors)}"
        return _dump(
            {
                "status": "unavailable",
                "model_loaded": False,
                "models": 0,
                "series": [],
                "reason": reason,
            },
            503,
        )
    return _dump(
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
        return {"data": freshness, "disk": disk}

    extra = await anyio.to_thread.run_sync(gather)
    ages = [m.age_seconds for m in registry.models.values()]
    models = {
        "status": "ok"
        if not registry.empty and not registry.errors
        else ("unavailable" if registry.empty else "degraded"),
        "count": len(registry.models),
        "champions": registry.champions,
        "load_errors": registry.errors,
        "oldest_age_seconds": round(max(ages), 1) if ages else None,
        "loaded_at": registry.loaded_at.isoformat(),
    }
    data_ok = all(v["status"] == "ok" for v in extra["data"].values())
    if registry.empty:
        status, code = "unavailable", 503
    elif models["status"] == "ok" and data_ok and extra["disk"]["status"] == "ok":
        status, code = "ok", 200
    else:
        status, code = "degraded", 200
    return _dump(
        {
            "status": status,
            "components": {
                "models": models,
                "data": {"status": "ok" if data_ok else "degraded", "series": extra["data"]},
                "disk": extra["disk"],
            },
        },
        code,
    )


@router.get("/status", tags=["health"], summary="Uptime, versions, last prediction, counts")
async def status(request: Request) -> Response:
    runtime = runtime_of(request)
    registry = runtime.holder.registry if runtime.holder else None
    return _dump(
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


@router.get("/metrics", tags=["health"], summary="Prometheus metrics (text format)")
async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    settings = runtime.settings
    if settings is not None and settings.prometheus_multiproc_dir is not None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(settings.prometheus_multiproc_dir))
        registry.register(ModelCollector(runtime.served_models))
    else:
        registry = runtime.metrics.registry
    data = await anyio.to_thread.run_sync(generate_latest, registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)


# -- errors ---------------------------------------------------------------------------------------
def validation_details(errors: Any, prefix: str | None = None) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors -> ``[{field, message, allowed?}]``."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if prefix:
            loc = [prefix, *loc]
        name = next((p for p in reversed(loc) if not p.isdigit()), "")
        detail: dict[str, Any] = {
            "field": ".".join(loc) or "body",
            "message": err.get("msg", "invalid"),
        }
        ctx = err.get("ctx") or {}
        if name in ALLOWED:
            detail["allowed"] = ALLOWED[name]
        elif "expected" in ctx:
            detail["allowed"] = re.findall(r"'([^']*)'", str(ctx["expected"])) or [
                str(ctx["expected"])
            ]
        for bound, keys in (("minimum", ("ge", "gt")), ("maximum", ("le", "lt"))):
            for key in keys:
                if key in ctx:
                    detail[bound] = ctx[key]
                    if key in ("gt", "lt"):
                        detail[bound + "_exclusive"] = True
        out.append(detail)
    return out


def _details_message(details: list[dict[str, Any]]) -> str:
    parts = []
    for d in details:
        text = f"{d['field']}: {d['message']}"
        if d.get("allowed") is not None:
            text += f" (allowed: {', '.join(str(a) for a in d['allowed'])})"
        elif "minimum" in d or "maximum" in d:
            text += f" (range: {d.get('minimum', '')}..{d.get('maximum', '')})"
        parts.append(text)
    return "; ".join(parts)


def _error_response(
    request: Request, status: int, code: str, message: str, **more: Any
) -> Response:
    rid = getattr(request.state, "request_id", None) or "-"
    headers = more.pop("headers", None)
    return Response(
        error_body(code, message, rid, **more), status_code=status, media_type=JSON, headers=headers
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status >= 500:
        logger.warning("%s: %s", exc.code, exc.message)
    return _error_response(
        request,
        exc.status,
        exc.code,
        exc.message,
        available=exc.available,
        details=exc.details,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(exc.errors())
    return _error_response(
        request, 422, "validation_error", _details_message(details), details=details
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.url.path}; see /docs for the endpoints"
    return _error_response(
        request,
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        message,
        headers=getattr(exc, "headers", None),
    )


# -- app ------------------------------------------------------------------------------------------
class LazyCORS:
    """CORS with the origins from settings (read in the lifespan); off when none are set."""

    def __init__(self, app: ASGIApp, runtime: ApiRuntime) -> None:
        self.app = app
        self.runtime = runtime
        self._cors: ASGIApp | None = None
        self._built_for: Settings | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.runtime.settings
        if scope["type"] != "http" or settings is None or not settings.cors_origins:
            await self.app(scope, receive, send)
            return
        if self._cors is None or self._built_for is not settings:
            self._cors = CORSMiddleware(
                self.app,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Content-Type", "X-API-Key", "X-Admin-Key", "X-Request-ID"],
                expose_headers=["X-Request-ID", "Retry-After"],
                max_age=600,
            )
            self._built_for = settings
        await self._cors(scope, receive, send)


async def _poll(runtime: ApiRuntime, interval: float) -> None:
    """Reload when the champion pointers or latest versions change on disk."""
    holder = runtime.registry_holder()
    while True:
        await asyncio.sleep(interval)
        try:
            if await anyio.to_thread.run_sync(holder.needs_reload):
                result = await runtime.reload()
                logger.info("polling reload: %s", result.message, extra={"outcome": result.outcome})
        except Exception:  # noqa: BLE001 - polling must survive anything
            logger.exception("champion polling failed; will retry")


def create_app(*, configure_logs: bool = True) -> FastAPI:
    """Build the app. Nothing is read or loaded until the lifespan starts."""
    runtime = ApiRuntime()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = get_settings()
        if configure_logs:
            configure_logging(settings.log_level, settings.log_format)
        install_request_id_filter()
        start = time.perf_counter()
        runtime.configure(settings)
        holder = runtime.registry_holder()
        registry = await anyio.to_thread.run_sync(holder.load_initial)
        runtime.ready_at = time.time()
        if registry.empty:
            logger.warning(
                "no model artifacts loaded from %s: /health answers 503 until a reload finds some",
                settings.models_dir,
                extra={"load_errors": registry.errors},
            )
        else:
            logger.info(
                "loaded %d model(s) for %d series in %.3f s",
                len(registry.models),
                len(registry.series_names()),
                time.perf_counter() - start,
                extra={"champions": registry.champions, "load_errors": registry.errors},
            )
        poller = None
        if settings.model_poll_seconds > 0:
            poller = asyncio.create_task(_poll(runtime, settings.model_poll_seconds))
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            if settings.prometheus_multiproc_dir is not None:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid(), str(settings.prometheus_multiproc_dir))

    app = FastAPI(
        title="Crypto price forecasting API",
        version=__version__,
        description=(
            "Forecasts from the champion models trained by the pipeline. Answers come from "
            "precomputed forecast paths loaded at start-up; `POST /model/reload` swaps in new "
            "artifacts atomically."
        ),
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.include_router(router)

    def openapi() -> dict[str, Any]:
        """FastAPI's schema plus the request bodies the hot endpoints validate themselves."""
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (PredictRequest, CompatPredictRequest, BatchRequest):
                doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in doc.pop("$defs", {}).items():
                    schemas.setdefault(name, sub)
                schemas.setdefault(model.__name__, doc)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(LazyCORS, runtime=runtime)
    app.add_middleware(ServingMiddleware, runtime=runtime)
    return app
