"""``/ws``: the live feed over a WebSocket, and its documentation as ``GET /ws``.

A connection is accepted, then checked: the API key (``X-API-Key`` header, or the ``api_key``
query parameter for browsers, which cannot set headers on a WebSocket) when ``API_KEY`` is set,
the ``Origin`` of a browser (this host or ``CORS_ORIGINS``) and ``WS_MAX_CONNECTIONS``. A refused
connection gets one ``error`` event and is closed. An accepted one gets ``hello``, then the
answers to its messages and the events of :mod:`pipeline.api.feed`. A bad message is answered
with an ``error`` event and the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from pipeline.api.deps import ApiRuntime, check_api_key
from pipeline.api.errors import ApiError, details_message, validation_details
from pipeline.api.feed import FeedHub, Subscriber, error_event
from pipeline.api.feed_schemas import (
    MAX_MESSAGE_BYTES,
    ClientMessage,
    PongEvent,
    ServerEvent,
    SubscribedEvent,
    UnsubscribedEvent,
)
from pipeline.api.schemas import ErrorResponse

logger = logging.getLogger(__name__)

router = APIRouter()

#: Close codes (RFC 6455): policy violation, internal error, try again later.
POLICY, INTERNAL, TRY_LATER = 1008, 1011, 1013

FEED_DOC = """The live feed is a **WebSocket** at this path (`ws://HOST:PORT/ws`); a plain GET
answers 426. Send JSON text messages:

* `{"action": "subscribe", "series": ["bitcoin-usd-1d"]}` → a `subscribed` event (every
  series subscribed now and the state of the new ones);
* `{"action": "unsubscribe", "series": ["bitcoin-usd-1d"]}` → `unsubscribed`;
* `{"action": "ping"}` → `pong`.

The server sends `hello` on connect, `forecast` when a new version or issue of a subscribed
series is loaded (after a reload, a poll or a refresh), `health` when a subscribed series'
champion turns stale (or expired, or fresh again), `heartbeat` every `WS_HEARTBEAT_SECONDS`,
and `error` for a bad message (the connection stays open) or a refused connection (then
closed: 1008 unauthorized or origin not allowed, 1013 too many connections or too slow).
When `API_KEY` is set, send it as `X-API-Key` or, from a browser, as `?api_key=`. Each
worker process pushes its own reloads: with several workers, use `MODEL_POLL_SECONDS`. The
schema of every server event is the 1XX (101) response below."""


@router.get(
    "/ws",
    tags=["feed"],
    summary="Live forecast feed (WebSocket): subscribe to series, get pushed updates",
    description=FEED_DOC,
    status_code=426,
    responses={
        "1XX": {
            "model": ServerEvent,
            "description": "101, switched to the WebSocket: the events it sends (JSON text)",
        },
        426: {"model": ErrorResponse, "description": "not a WebSocket upgrade"},
    },
    # A socket has no request body: the messages a client sends are this extension.
    openapi_extra={"x-client-messages": ClientMessage.model_json_schema()},
)
async def feed_doc() -> Response:
    raise ApiError(
        426, "upgrade_required", "/ws is a WebSocket: connect with ws://HOST:PORT/ws (see /docs)"
    )


@router.websocket("/ws")
async def feed(websocket: WebSocket) -> None:
    runtime: ApiRuntime = websocket.app.state.runtime
    hub: FeedHub = websocket.app.state.feed
    await websocket.accept()
    refusal = _refusal(websocket, runtime, hub)
    if refusal is not None:
        code, error, message = refusal
        await websocket.send_text(error_event(error, message))
        await websocket.close(code)
        return
    sub = hub.join()
    if sub is None:
        message = (
            f"too many connections: this worker accepts WS_MAX_CONNECTIONS={hub.max_connections}"
            "; retry later"
        )
        await websocket.send_text(error_event("too_many_connections", message))
        await websocket.close(TRY_LATER)
        return
    sender = asyncio.create_task(_send(websocket, sub))
    try:
        sub.offer(hub.hello())
        await _listen(websocket, hub, sub)
    finally:
        hub.leave(sub)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


def _refusal(
    websocket: WebSocket, runtime: ApiRuntime, hub: FeedHub
) -> tuple[int, str, str] | None:
    """(close code, error, message) when the connection is refused."""
    if runtime.holder is None:
        return INTERNAL, "not_started", "the API has not started: its lifespan never ran"
    provided = websocket.headers.get("x-api-key") or websocket.query_params.get("api_key")
    try:
        check_api_key(runtime, None if provided is None else provided.encode())
    except ApiError:
        return POLICY, "unauthorized", "missing or invalid API key: send X-API-Key or ?api_key="
    origin = websocket.headers.get("origin")
    if origin is not None and not _origin_allowed(origin, websocket, runtime):
        return POLICY, "origin_not_allowed", f"origin {origin} is not this host nor in CORS_ORIGINS"
    return None


def _origin_allowed(origin: str, websocket: WebSocket, runtime: ApiRuntime) -> bool:
    """A browser page of this host, or of an origin listed in ``CORS_ORIGINS``."""
    settings = runtime.settings
    if settings is not None and ("*" in settings.cors_origins or origin in settings.cors_origins):
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host")


async def _send(websocket: WebSocket, sub: Subscriber) -> None:
    """The connection's one writer: drains the queue; closes a client that fell behind."""
    while True:
        text = await sub.queue.get()
        await websocket.send_text(text)
        if sub.lagging and sub.queue.empty():
            message = "this connection fell too far behind its events; reconnect"
            await websocket.send_text(error_event("too_slow", message))
            await websocket.close(TRY_LATER)
            return


async def _listen(websocket: WebSocket, hub: FeedHub, sub: Subscriber) -> None:
    """Answer the client's messages until it disconnects (or the sender closed)."""
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            reply = error_event("invalid_message", "send JSON text frames, not binary ones")
        elif len(text) > MAX_MESSAGE_BYTES:
            reply = error_event(
                "message_too_large", f"messages are at most {MAX_MESSAGE_BYTES} bytes"
            )
        else:
            for reply in answer(hub, sub, text):
                await sub.queue.put(reply)
            continue
        await sub.queue.put(reply)


def answer(hub: FeedHub, sub: Subscriber, text: str) -> list[str]:
    """The replies to one client text message (a subscribe naming known and unknown series
    gets ``subscribed`` for the known ones, then ``error`` for the rest)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        return [error_event("invalid_json", f"the message is not JSON: {exc}")]
    try:
        msg = ClientMessage.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc.errors(include_url=False))
        return [error_event("invalid_message", details_message(details))]
    if msg.action == "ping":
        return [PongEvent(at=hub.runtime.clock()).model_dump_json()]
    if msg.action == "unsubscribe":
        hub.unsubscribe(sub, msg.series)
        return [UnsubscribedEvent(series=sorted(sub.series)).model_dump_json()]
    available = hub.runtime.registry_holder().registry.series_names()
    known = [name for name in msg.series if name in available]
    unknown = [name for name in msg.series if name not in available]
    hub.subscribe(sub, known)
    replies = []
    if known or not unknown:
        states = hub.states(known)
        replies.append(SubscribedEvent(series=sorted(sub.series), states=states).model_dump_json())
    if unknown:
        message = f"not served: {', '.join(unknown)}; available: {', '.join(available) or 'none'}"
        replies.append(error_event("unknown_series", message, available))
    return replies
