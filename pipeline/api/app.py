"""The FastAPI application: ``create_app()`` and the lifespan that loads the models.

``create_app()`` reads nothing and loads nothing; the lifespan reads the settings, loads the
registry (:mod:`pipeline.api.registry`) and starts the optional champion-pointer polling. An app
whose lifespan never ran (a ``TestClient`` used without ``with``) answers 503 ``not_started``
saying so (:data:`pipeline.api.deps.NOT_STARTED`). The routes live in
:mod:`pipeline.api.routes.predict` (the hot prediction endpoints, answered by
:class:`~pipeline.api.hot.HotRoute`) and :mod:`pipeline.api.routes.ops` (health, status,
metrics, models, data, reload), what they share in :mod:`pipeline.api.deps` and the error
answers in :mod:`pipeline.api.errors`. The OpenAPI document is FastAPI's own, generated from the
pydantic models of :mod:`pipeline.api.schemas`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline import __version__
from pipeline.api.deps import ApiRuntime
from pipeline.api.errors import add_error_handlers
from pipeline.api.feed import FeedHub
from pipeline.api.middleware import ServingMiddleware, install_request_id_filter
from pipeline.api.routes import accuracy as api_accuracy
from pipeline.api.routes import dashboard as api_dashboard
from pipeline.api.routes import jobs as api_jobs
from pipeline.api.routes import ops as api_ops
from pipeline.api.routes import predict as api_predict
from pipeline.api.routes import ws as api_ws
from pipeline.config import ADMIN_KEY_HEADER, Settings, get_settings
from pipeline.logs import configure_logging

logger = logging.getLogger(__name__)


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
                allow_headers=["Content-Type", "X-API-Key", ADMIN_KEY_HEADER, "X-Request-ID"],
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
    feed = FeedHub(runtime)  # the /ws subscribers of this worker
    runtime.reload_listeners.append(feed.registry_changed)

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
        await runtime.trust.start()
        poller = None
        if settings.model_poll_seconds > 0:
            poller = asyncio.create_task(_poll(runtime, settings.model_poll_seconds))
        feed.start()
        try:
            yield
        finally:
            await feed.stop()
            await runtime.trust.stop()
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
    app.state.feed = feed
    # One probe, then the hot routes, then the rest: Starlette matches routes in this order and
    # the OpenAPI paths follow it.
    app.include_router(api_ops.live_router)
    app.include_router(api_predict.router)
    app.include_router(api_ops.router)
    app.include_router(api_jobs.router)
    app.include_router(api_accuracy.router)
    app.include_router(api_dashboard.router)
    app.include_router(api_ws.router)

    add_error_handlers(app)
    app.add_middleware(LazyCORS, runtime=runtime)
    app.add_middleware(ServingMiddleware, runtime=runtime)
    return app
