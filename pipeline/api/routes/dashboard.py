"""The dashboard: ``GET /dashboard`` (one HTML page), its assets and ``GET /api/v1/model-card``.

The page and its script and style sheet ship inside the package (``pipeline/api/static/``) and
are served by the API itself: no CDN, no external font, no build step. The page draws its chart
as SVG from the JSON endpoints (``/api/v1/models``, ``/api/v1/predict`` and ``/batch``,
``/data/latest``, the model card below and ``/api/v1/accuracy`` when it answers) and updates
itself from the ``/ws`` feed. The page holds no data, so it is public; the data endpoints ask
for the API key when ``API_KEY`` is set (the page then asks for it).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from pipeline.api.card import CardCache, DataFreshness, ModelCard
from pipeline.api.deps import API_KEY, runtime_of
from pipeline.api.errors import ERRORS, ApiError, json_response
from pipeline.api.schemas import COIN_REGEX, VS_REGEX, Timeframe
from pipeline.errors import UsageError
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
#: The assets the page loads, with their media types (nothing else is served from the folder).
ASSETS = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

#: The live accuracy endpoint the page shows when the app serves it.
ACCURACY_PATH = "/api/v1/accuracy"

router = APIRouter()
_cards = CardCache()


@functools.cache
def asset(name: str) -> tuple[bytes, str]:
    """An asset's bytes and ETag, read once per process."""
    body = (STATIC_DIR / name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def _asset_response(request: Request, name: str) -> Response:
    body, etag = asset(name)
    headers = {"etag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=ASSETS[name], headers=headers)


@router.get(
    "/dashboard",
    tags=["dashboard"],
    summary="The forecast dashboard (an HTML page; updates live from /ws)",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}, "description": "the page"}},
)
async def dashboard(request: Request) -> Response:
    """A chart of the recent prices and the champion's forecast fan (median, 80% and 95%
    bands) of one series, its model card and freshness; see the documentation's Dashboard
    page."""
    return _asset_response(request, "dashboard.html")


@router.get("/dashboard/static/{name}", include_in_schema=False)
async def dashboard_asset(request: Request, name: str) -> Response:
    if name not in ASSETS:
        raise ApiError(404, "not_found", f"no dashboard asset {name!r}")
    return _asset_response(request, name)


@router.get(
    "/api/v1/model-card",
    response_model=ModelCard,
    responses=ERRORS,
    dependencies=API_KEY,
    tags=["models"],
    summary="A series' champion, why it is the champion, its backtest against naive, data age",
)
async def model_card(
    request: Request,
    coin: Annotated[str | None, Query(pattern=COIN_REGEX)] = None,
    vs_currency: Annotated[str | None, Query(pattern=VS_REGEX)] = None,
    timeframe: Annotated[Timeframe | None, Query()] = None,
) -> Response:
    """Defaults: the first configured coin and timeframe and the configured currency."""
    runtime = runtime_of(request)
    holder = runtime.registry_holder()
    settings = runtime._settings()
    try:
        series = SeriesId(
            coin or settings.coins[0],
            vs_currency or settings.vs_currency,
            timeframe or settings.frequencies[0],
        )
    except UsageError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    registry = holder.registry
    if registry.find(series.name) is None:
        names = registry.series_names()
        raise ApiError(
            404,
            "not_found",
            f"no champion is served for {series.name}; available: {', '.join(names) or 'none'}",
            available=names,
        )
    part = await anyio.to_thread.run_sync(_cards.static_part, registry, holder.store, series)
    data = runtime.data
    assert data is not None
    fresh = await anyio.to_thread.run_sync(data.freshness, series)
    card = ModelCard(**part, data=DataFreshness(**fresh), accuracy_url=_accuracy_url(request))
    return json_response(card.model_dump_json().encode())


def _accuracy_url(request: Request) -> str | None:
    """``ACCURACY_PATH`` when this app has that route (the live accuracy of the ledger)."""
    routes = request.app.routes
    return ACCURACY_PATH if any(getattr(r, "path", None) == ACCURACY_PATH for r in routes) else None
