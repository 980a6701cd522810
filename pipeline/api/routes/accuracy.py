"""Live accuracy from the forecast ledger: the leaderboard of a series' models and what was
served at a past time.

Both read the ledger through :mod:`pipeline.ledger.read` (precomputed aggregates and one indexed
issue row). The ledger is opened on first use and kept on the app; when it cannot be opened or
read the endpoints answer 503 ``ledger_unavailable`` (and try again on the next request) while
the rest of the API keeps serving.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from pipeline.api.accuracy_schemas import AccuracyResponse, ServedIssueResponse
from pipeline.api.deps import API_KEY, ApiRuntime, runtime_of
from pipeline.api.errors import ERRORS, ApiError, dump_json, dump_response, json_response
from pipeline.api.schemas import COIN_REGEX, MODEL_REGEX, VS_REGEX, ErrorResponse, Timeframe
from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.ledger.db import Ledger, LedgerError, open_ledger
from pipeline.ledger.read import leaderboard, served_at
from pipeline.ledger.record import utc
from pipeline.series import SeriesId

router = APIRouter()

Window = Literal["7d", "30d", "90d", "all"]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": ErrorResponse, "description": "the ledger holds nothing for this series"},
    503: {"model": ErrorResponse, "description": "the ledger database cannot be read now"},
}
CoinQuery = Annotated[
    str | None, Query(pattern=COIN_REGEX, description="default: the first configured coin")
]
VsQuery = Annotated[
    str | None, Query(pattern=VS_REGEX, description="default: the configured quote currency")
]
TimeframeQuery = Annotated[Timeframe | None, Query(description="default: the first configured one")]


class LedgerHolder:
    """The app's open ledger: opened on first use, dropped (and reopened later) on an error."""

    def __init__(self) -> None:
        self._ledger: Ledger | None = None
        self._lock = threading.Lock()

    def get(self, settings: Settings) -> Ledger:
        with self._lock:
            if self._ledger is None:
                self._ledger = open_ledger(settings)
            return self._ledger

    def drop(self) -> None:
        with self._lock:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None


def _holder(request: Request) -> LedgerHolder:
    holder = getattr(request.app.state, "ledger_holder", None)
    if holder is None:
        holder = request.app.state.ledger_holder = LedgerHolder()
    return holder


def _series(runtime: ApiRuntime, coin: str | None, vs: str | None, freq: str | None) -> SeriesId:
    settings = runtime._settings()
    default_coin, default_freq = runtime.default_series()
    try:
        return SeriesId(coin or default_coin, vs or settings.vs_currency, freq or default_freq)
    except UsageError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None


async def _read(request: Request, runtime: ApiRuntime, read: Any, *args: Any, **kw: Any) -> Any:
    """``read(ledger, *args, **kw)`` in a worker thread; a ledger error is a 503."""
    settings = runtime._settings()
    holder = _holder(request)

    def run() -> Any:
        return read(holder.get(settings), *args, **kw)

    try:
        return await anyio.to_thread.run_sync(run)
    except LedgerError as exc:
        holder.drop()
        raise ApiError(503, "ledger_unavailable", str(exc)) from None
    except UsageError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None


def _not_recorded(series: SeriesId, what: str) -> ApiError:
    return ApiError(
        404,
        "not_in_ledger",
        f"the forecast ledger holds {what} for {series.name}: it is filled when the pipeline "
        "trains or refreshes (or by `python -m pipeline ledger replay`) and scored as prices "
        "arrive",
    )


@router.get(
    "/api/v1/accuracy",
    response_model=AccuracyResponse,
    responses=_RESPONSES,
    dependencies=API_KEY,
    tags=["accuracy"],
    summary="Live accuracy of a series' models",
)
async def accuracy(
    request: Request,
    coin: CoinQuery = None,
    vs_currency: VsQuery = None,
    timeframe: TimeframeQuery = None,
    model: Annotated[str | None, Query(pattern=MODEL_REGEX, description="one model")] = None,
    window: Annotated[Window, Query(description="rolling window of matured points")] = "30d",
    steps: Annotated[bool, Query(description="add the figures of every step")] = False,
) -> Response:
    """The live leaderboard: every recorded model of the series scored on the prices that
    arrived after its forecasts, best WIS ratio to naive first, the champion marked. Answers
    are kept per worker for ``ACCURACY_CACHE_SECONDS`` (:mod:`pipeline.api.accuracy_cache`)."""
    runtime = runtime_of(request)
    series = _series(runtime, coin, vs_currency, timeframe)
    key = (series.name, model, window, steps)
    cached = runtime.accuracy.get(key)
    if cached is not None:
        return json_response(cached)
    body = await _read(request, runtime, _leaderboard_body, series.name, model, window, steps)
    if body is None:
        scope = f"no scored forecasts of model {model!r}" if model else "no scored forecasts"
        raise _not_recorded(series, f"{scope} in window {window}")
    runtime.accuracy.put(key, body)
    return json_response(body)


def _leaderboard_body(
    ledger: Ledger, series: str, model: str | None, window: str, steps: bool
) -> bytes | None:
    """The serialised answer of ``/api/v1/accuracy`` (``None``: no scored rows)."""
    board = leaderboard(ledger, series, model=model, window=window, steps=steps)
    if not board.rows:
        return None
    rows = [
        {
            "model": row.model,
            "champion": row.champion,
            "figures": row.figures,
            "steps": {str(k): v for k, v in sorted(row.steps.items())} if steps else None,
        }
        for row in board.rows
    ]
    return dump_json(
        {
            "series": board.series,
            "window": board.window,
            "as_of": board.as_of.isoformat() if board.as_of else None,
            "champion": board.champion,
            "models": rows,
        }
    )


@router.get(
    "/api/v1/forecasts/history",
    response_model=ServedIssueResponse,
    responses=_RESPONSES,
    dependencies=API_KEY,
    tags=["accuracy"],
    summary="What was served at a past time",
)
async def forecast_history(
    request: Request,
    as_of: Annotated[datetime, Query(description="ISO 8601 time; without a zone, UTC")],
    coin: CoinQuery = None,
    vs_currency: VsQuery = None,
    timeframe: TimeframeQuery = None,
) -> Response:
    """The champion issue that was newest at ``as_of``: model, version, issue, checksums and
    the path of its forecast file (for audits and look-ahead-free backtests)."""
    runtime = runtime_of(request)
    series = _series(runtime, coin, vs_currency, timeframe)
    when = utc(as_of)
    served = await _read(request, runtime, served_at, series.name, when)
    if served is None:
        raise _not_recorded(series, f"no champion issue at or before {when.isoformat()}")
    body = {"series": served.series, "as_of": when.isoformat()} | {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in asdict(served).items()
        if k != "series"
    }
    return dump_response(body)
