"""The /ws feed of a real API process: 200 clients connected at once over loopback each receive
the reload's forecast event exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers.feed import promote_new
from tests.helpers.serving import BTC_1D

from .conftest import ADMIN_KEY, Api

pytestmark = pytest.mark.slow

CLIENTS = 200
#: Seconds one client waits for one message before the test fails.
RECEIVE_TIMEOUT = 30.0


async def expect(ws: ClientConnection, kind: str, limit: int = 20) -> dict[str, Any]:
    """The next message of type ``kind``; heartbeats are skipped, anything else fails."""
    for _ in range(limit):
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT))
        if message["type"] == kind:
            return message
        assert message["type"] == "heartbeat", message
    raise AssertionError(f"no {kind} in {limit} messages")


async def many_clients(api: Api) -> list[dict[str, Any]]:
    uri = f"ws://127.0.0.1:{api.port}/ws"
    clients = await asyncio.gather(*(connect(uri, open_timeout=30) for _ in range(CLIENTS)))
    try:
        await asyncio.gather(*(expect(ws, "hello") for ws in clients))
        subscribe = json.dumps({"action": "subscribe", "series": [BTC_1D.name]})
        await asyncio.gather(*(ws.send(subscribe) for ws in clients))
        await asyncio.gather(*(expect(ws, "subscribed") for ws in clients))
        new = await asyncio.to_thread(promote_new, api.store, BTC_1D, "naive", end=None)
        async with httpx.AsyncClient(base_url=api.base, timeout=30) as http:
            reload = await http.post("/model/reload", headers={"X-Admin-Key": ADMIN_KEY})
        assert reload.status_code == 200
        events = await asyncio.gather(*(expect(ws, "forecast") for ws in clients))
        assert {event["champion"]["version"] for event in events} == {new.version}
        # Exactly one each: the next message after the event answers the client's own ping.
        await asyncio.gather(*(ws.send('{"action": "ping"}') for ws in clients))
        await asyncio.gather(*(expect(ws, "pong") for ws in clients))
        return events
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))


def test_two_hundred_clients_each_get_one_reload_event(start_api: Callable[..., Api]) -> None:
    api = start_api()
    # In a thread of its own: a started Playwright keeps an event loop in the main thread.
    with ThreadPoolExecutor(1) as pool:
        events = pool.submit(lambda: asyncio.run(many_clients(api))).result()
    assert len(events) == CLIENTS
    assert all(event["series"] == BTC_1D.name for event in events)
    assert all(event["change"] == "new_champion" for event in events)
    assert all(len(event["forecast"]) == 30 for event in events)
