"""What the routes share: ``ApiRuntime`` (settings, registry, counters; filled by the lifespan),
the API-key check and the served-model lookup.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.types import Scope

from pipeline import __version__
from pipeline.api.accuracy_cache import AnswerCache
from pipeline.api.data import DataCache
from pipeline.api.errors import ApiError, NotServedError, unauthorized
from pipeline.api.freshness import IssueAgeCollector, Staleness, utc_now
from pipeline.api.middleware import ApiMetrics, ModelCollector, RateLimiter
from pipeline.api.registry import Registry, RegistryHolder, ReloadResult
from pipeline.api.served import ServedModel
from pipeline.api.trust import TrustCache
from pipeline.artifacts.store import ArtifactStore, code_version
from pipeline.config import ADMIN_KEY_HEADER, Settings
from pipeline.errors import UsageError
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)

#: The answer when the lifespan never ran. Servers (uvicorn, hypercorn) finish the lifespan's
#: start-up before they accept a connection, so only an in-process client that skipped it, such
#: as a ``TestClient`` used without ``with``, or ``--lifespan off``, ever sees this.
NOT_STARTED = (
    "the app's lifespan has not run: use `with TestClient(app)` or an ASGI server that runs "
    "lifespan events"
)


def not_started() -> ApiError:
    """503 ``not_started``: the settings and models are loaded by the lifespan, which never ran."""
    return ApiError(503, "not_started", NOT_STARTED)


class ApiRuntime:
    """Everything the routes and the middleware share; filled by the lifespan.

    ``clock`` is the time the forecasts are answered at (tests freeze it); ``staleness`` the
    rules that flag or refuse old forecasts (``STALE_AFTER_PERIODS``, ``STALE_LIMIT_PERIODS``).
    """

    def __init__(self) -> None:
        self.clock: Callable[[], datetime] = utc_now
        self.staleness = Staleness()
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
        #: called with (old, new) registry after every swap (the live feed: pipeline.api.feed)
        self.reload_listeners: list[Callable[[Registry, Registry], None]] = []
        self._prediction_counters: dict[tuple[str, str], Any] = {}
        #: the trust blocks of the predict answers (pipeline.api.trust), refreshed in the background
        self.trust = TrustCache(self.metrics.registry)
        self.reload_listeners.append(self.trust.registry_changed)
        #: the live-accuracy answers (pipeline.api.accuracy_cache), dropped on every reload
        self.accuracy = AnswerCache()
        self.reload_listeners.append(self.accuracy.registry_changed)
        for collector in self.model_collectors():
            self.metrics.registry.register(collector)

    def configure(self, settings: Settings) -> None:
        self.settings = settings
        self.holder = RegistryHolder(ArtifactStore(settings.models_dir))
        self.data = DataCache(settings.data_dir)
        self.rate_limit_per_minute = settings.rate_limit_per_minute
        self.limiter = (
            RateLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None
        )
        self.max_body_bytes = settings.max_body_bytes
        self.staleness = Staleness.from_settings(settings)
        self.api_key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        self.admin_key = (
            settings.admin_api_key.get_secret_value().encode() if settings.admin_api_key else None
        )
        self.code_version = code_version()
        self.trust.configure(settings)
        self.accuracy.configure(settings.accuracy_cache_seconds)

    def model_collectors(self) -> list[ModelCollector | IssueAgeCollector]:
        """The collectors that read the served models at scrape time."""
        return [
            ModelCollector(self.served_models),
            IssueAgeCollector(self.served_models, lambda: self.clock()),
        ]

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
            raise not_started()
        return self.settings

    def registry_holder(self) -> RegistryHolder:
        if self.holder is None:
            raise not_started()
        return self.holder

    async def reload(self) -> ReloadResult:
        holder = self.registry_holder()
        async with self.reload_lock:
            old = holder.registry
            result = await anyio.to_thread.run_sync(holder.reload)
            new = holder.registry
        if new is not old:
            for listener in self.reload_listeners:
                listener(old, new)
        self.reloads[result.outcome] += 1
        self.metrics.reloads.labels(outcome=result.outcome).inc()
        return result


def runtime_of(request: Request) -> ApiRuntime:
    runtime: ApiRuntime = request.app.state.runtime
    return runtime


def lookup(
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


# -- security -------------------------------------------------------------------------------------
api_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    auto_error=False,
    description="needed when API_KEY is set",
)
admin_key_header = APIKeyHeader(
    name=ADMIN_KEY_HEADER,
    scheme_name="AdminKey",
    auto_error=False,
    description="ADMIN_API_KEY; admin endpoints are off without it",
)


def _matches(provided: bytes | None, expected: bytes) -> bool:
    return provided is not None and hmac.compare_digest(provided, expected)


def check_api_key(runtime: ApiRuntime, provided: bytes | None) -> None:
    """The API-key check (``X-API-Key``, when API_KEY is set) of every endpoint that needs it."""
    expected = runtime.api_key
    if expected is not None and not _matches(provided, expected):
        raise unauthorized("X-API-Key")


def api_key_of(scope: Scope) -> bytes | None:
    """The raw ``X-API-Key`` header (the hot routes read it without FastAPI's machinery)."""
    return next((v for k, v in scope["headers"] if k == b"x-api-key"), None)


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    check_api_key(runtime_of(request), None if key is None else key.encode())


async def require_admin_key(
    request: Request, key: Annotated[str | None, Security(admin_key_header)]
) -> None:
    expected = runtime_of(request).admin_key
    if expected is None:
        raise ApiError(403, "admin_disabled", "admin endpoints are disabled: set ADMIN_API_KEY")
    if not _matches(None if key is None else key.encode(), expected):
        raise unauthorized(ADMIN_KEY_HEADER)


API_KEY = [Security(require_api_key)]
ADMIN_KEY = [Security(require_admin_key)]


#: The runtime as a route parameter (``runtime: Runtime``).
Runtime = Annotated[ApiRuntime, Depends(runtime_of)]
