"""The /ws live feed in process (Starlette's test client speaks real WebSocket frames to the app):
subscriptions, bad messages, limits, the API key, and the events pushed on reloads and stale
forecasts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from pipeline.api.feed_schemas import MAX_MESSAGE_BYTES
from pipeline.artifacts.store import ArtifactStore
from tests.helpers.feed import promote_new, reissue
from tests.helpers.serving import BTC_1D, BTC_1H, FrozenClock, Metas, TestClient

ADMIN = {"X-Admin-Key": "admin-key-for-tests"}

Session = Any  # starlette.testclient.WebSocketTestSession


def hello(ws: Session) -> dict[str, Any]:
    message: dict[str, Any] = ws.receive_json()
    assert message["type"] == "hello", message
    return message


def next_event(ws: Session, kind: str, limit: int = 50) -> dict[str, Any]:
    """The next event of type ``kind``, skipping heartbeats (at most ``limit`` messages)."""
    for _ in range(limit):
        message: dict[str, Any] = ws.receive_json()
        if message["type"] == kind:
            return message
        assert message["type"] == "heartbeat", message
    raise AssertionError(f"no {kind} event in {limit} messages")


def subscribe(ws: Session, *names: str) -> dict[str, Any]:
    ws.send_json({"action": "subscribe", "series": list(names)})
    return next_event(ws, "subscribed")


def closed_with(ws: Session) -> tuple[dict[str, Any], int]:
    """The error event of a refused connection and the close code that followed it."""
    event: dict[str, Any] = ws.receive_json()
    with pytest.raises(WebSocketDisconnect) as info:
        ws.receive_json()
    return event, info.value.code


def test_subscribe_and_unsubscribe(client: TestClient, metas: Metas) -> None:
    with client.websocket_connect("/ws") as ws:
        first = hello(ws)
        assert first["series"] == [BTC_1D.name, BTC_1H.name]
        answer = subscribe(ws, BTC_1D.name, BTC_1H.name)
        assert answer["series"] == [BTC_1D.name, BTC_1H.name]
        state = {s["series"]: s for s in answer["states"]}
        champion = metas[f"{BTC_1D.name}/drift"]
        assert state[BTC_1D.name]["model"] == "drift"
        assert state[BTC_1D.name]["version"] == champion.version
        assert state[BTC_1D.name]["status"] == "ok"
        assert state[BTC_1H.name]["horizon"] == 48
        ws.send_json({"action": "unsubscribe", "series": [BTC_1D.name]})
        assert next_event(ws, "unsubscribed")["series"] == [BTC_1H.name]
        ws.send_json({"action": "unsubscribe", "series": [BTC_1H.name, "never-subscribed-1d"]})
        assert next_event(ws, "unsubscribed")["series"] == []


@pytest.mark.parametrize(
    ("send", "error"),
    [
        ("{not json", "invalid_json"),
        ('{"action": "shout"}', "invalid_message"),
        ('{"action": "subscribe", "series": "bitcoin-usd-1d"}', "invalid_message"),
        ('{"action": "subscribe", "series": ["BAD NAME"]}', "invalid_message"),
        ('{"action": "ping", "extra": 1}', "invalid_message"),
        ("[1, 2]", "invalid_message"),
        ('{"action": "ping", "series": ["' + "a" * MAX_MESSAGE_BYTES + '"]}', "message_too_large"),
    ],
)
def test_a_bad_message_gets_an_error_event_and_the_connection_stays(
    client: TestClient, metas: Metas, send: str, error: str
) -> None:
    with client.websocket_connect("/ws") as ws:
        hello(ws)
        ws.send_text(send)
        event = next_event(ws, "error")
        assert event["error"] == error
        assert event["message"]
        ws.send_json({"action": "ping"})
        assert next_event(ws, "pong")["at"] == "2026-11-21T00:00:00Z"  # the API's clock


def test_binary_frames_are_refused_but_the_connection_stays(
    client: TestClient, metas: Metas
) -> None:
    with client.websocket_connect("/ws") as ws:
        hello(ws)
        ws.send_bytes(b'{"action": "ping"}')
        assert next_event(ws, "error")["error"] == "invalid_message"
        ws.send_json({"action": "ping"})
        assert next_event(ws, "pong")


def test_unknown_series_are_named_and_the_known_ones_subscribed(
    client: TestClient, metas: Metas
) -> None:
    with client.websocket_connect("/ws") as ws:
        hello(ws)
        ws.send_json({"action": "subscribe", "series": ["dogecoin-usd-1d"]})
        event = next_event(ws, "error")
        assert event["error"] == "unknown_series"
        assert "dogecoin-usd-1d" in event["message"]
        assert event["available"] == [BTC_1D.name, BTC_1H.name]
        ws.send_json({"action": "subscribe", "series": [BTC_1H.name, "dogecoin-usd-1d"]})
        assert next_event(ws, "subscribed")["series"] == [BTC_1H.name]
        assert next_event(ws, "error")["error"] == "unknown_series"


def test_the_connection_limit_refuses_one_more_until_one_leaves(
    metas: Metas, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(WS_MAX_CONNECTIONS="2")
    with client.websocket_connect("/ws") as first, client.websocket_connect("/ws") as second:
        hello(first)
        hello(second)
        with client.websocket_connect("/ws") as third:
            event, code = closed_with(third)
        assert event["error"] == "too_many_connections"
        assert "WS_MAX_CONNECTIONS=2" in event["message"]
        assert code == 1013
    with client.websocket_connect("/ws") as again:  # both left: room again
        hello(again)


def test_the_api_key_is_required_when_set(
    metas: Metas, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(API_KEY="feed-key-for-tests")
    for headers, path in (({}, "/ws"), ({"X-API-Key": "wrong"}, "/ws"), ({}, "/ws?api_key=no")):
        with client.websocket_connect(path, headers=headers) as ws:
            event, code = closed_with(ws)
        assert (event["error"], code) == ("unauthorized", 1008)
        assert "feed-key-for-tests" not in event["message"]
    with client.websocket_connect("/ws", headers={"X-API-Key": "feed-key-for-tests"}) as ws:
        hello(ws)
    with client.websocket_connect("/ws?api_key=feed-key-for-tests") as ws:  # browsers
        hello(ws)


def test_a_browser_page_of_another_origin_is_refused(
    metas: Metas, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(CORS_ORIGINS="https://allowed.example")
    with client.websocket_connect("/ws", headers={"Origin": "https://evil.example"}) as ws:
        event, code = closed_with(ws)
    assert (event["error"], code) == ("origin_not_allowed", 1008)
    for origin in ("http://testserver", "https://allowed.example"):
        with client.websocket_connect("/ws", headers={"Origin": origin}) as ws:
            hello(ws)


def test_a_promotion_is_pushed_to_the_subscribers_of_its_series_only(
    metas: Metas, make_client: Callable[..., TestClient], store: ArtifactStore
) -> None:
    client = make_client(ADMIN_API_KEY=ADMIN["X-Admin-Key"])
    with client.websocket_connect("/ws") as daily, client.websocket_connect("/ws") as hourly:
        hello(daily)
        hello(hourly)
        subscribe(daily, BTC_1D.name)
        subscribe(hourly, BTC_1H.name)
        new = promote_new(store, BTC_1D, "naive")
        assert client.post("/model/reload", headers=ADMIN).status_code == 200
        event = next_event(daily, "forecast")
        assert event["series"] == BTC_1D.name
        assert event["change"] == "new_champion"
        assert event["champion"]["model"] == "naive"
        assert event["champion"]["version"] == new.version
        assert event["champion"]["status"] == "ok"
        assert [(m["model"], m["version"]) for m in event["models"]] == [("naive", new.version)]
        assert len(event["forecast"]) == 30
        assert event["forecast"][0]["step"] == 1
        assert event["forecast"][0]["timestamp"] == "2026-11-22T00:00:00Z"
        # The hourly subscriber got nothing: its next message answers its own ping.
        hourly.send_json({"action": "ping"})
        assert next_event(hourly, "pong")
        # A reload that changes nothing pushes nothing.
        assert client.post("/model/reload", headers=ADMIN).status_code == 200
        daily.send_json({"action": "ping"})
        assert next_event(daily, "pong")


def test_a_new_issue_is_pushed_as_new_issue(
    metas: Metas, make_client: Callable[..., TestClient], store: ArtifactStore
) -> None:
    client = make_client(ADMIN_API_KEY=ADMIN["X-Admin-Key"])
    champion = metas[f"{BTC_1H.name}/drift"]
    with client.websocket_connect("/ws") as ws:
        hello(ws)
        subscribe(ws, BTC_1H.name)
        origin = reissue(store, champion)
        assert client.post("/model/reload", headers=ADMIN).status_code == 200
        event = next_event(ws, "forecast")
    assert event["change"] == "new_issue"
    assert event["champion"]["version"] == champion.version
    assert event["champion"]["origin"] == f"{origin:%Y-%m-%dT%H:%M:%SZ}"
    assert event["forecast"][0]["timestamp"] == f"{origin + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"


def test_health_events_when_a_series_turns_stale_and_fresh_again(
    metas: Metas, make_client: Callable[..., TestClient], clock: FrozenClock
) -> None:
    client = make_client(WS_HEARTBEAT_SECONDS="0.02")
    with client.websocket_connect("/ws") as ws:
        hello(ws)
        subscribe(ws, BTC_1D.name)
        beat = next_event(ws, "heartbeat")
        assert beat["series"] == [BTC_1D.name]
        clock.set(clock.now + timedelta(days=2, hours=1))  # past STALE_AFTER_PERIODS=2 of 1d
        event = next_event(ws, "health", limit=500)
        assert (event["series"], event["status"], event["previous"]) == (BTC_1D.name, "stale", "ok")
        assert event["model"] == "drift"
        assert event["age_seconds"] == (2 * 24 + 1) * 3600
        clock.set(clock.now + timedelta(days=40))  # beyond the 30-step path: expired
        event = next_event(ws, "health", limit=500)
        assert (event["status"], event["previous"]) == ("expired", "stale")


def test_get_ws_answers_426_and_the_messages_are_in_openapi(client: TestClient) -> None:
    response = client.get("/ws")
    assert response.status_code == 426
    assert response.json()["error"] == "upgrade_required"
    doc = client.get("/openapi.json").json()
    operation = doc["paths"]["/ws"]["get"]
    assert "subscribe" in operation["description"]
    events = operation["responses"]["1XX"]["content"]["application/json"]["schema"]
    refs = {item["$ref"].rsplit("/", 1)[1] for item in events["oneOf"]}
    assert {"ForecastEvent", "HealthEvent", "HeartbeatEvent", "ErrorEvent"} <= refs
    assert refs <= set(doc["components"]["schemas"])
    client_messages = operation["x-client-messages"]
    assert client_messages["properties"]["action"]["enum"] == ["subscribe", "unsubscribe", "ping"]


def test_polling_pushes_what_it_finds_on_disk(
    metas: Metas, make_client: Callable[..., TestClient], store: ArtifactStore
) -> None:
    client = make_client(MODEL_POLL_SECONDS="0.05", WS_HEARTBEAT_SECONDS="0.05")
    with client.websocket_connect("/ws") as ws:
        hello(ws)
        subscribe(ws, BTC_1D.name)
        new = promote_new(store, BTC_1D, "naive")
        # The new version is written before it is promoted: a poll in between pushes it as one
        # of the other models first, then the next poll pushes the new champion.
        event = next_event(ws, "forecast", limit=1000)  # heartbeats until the poll sees it
        if event["change"] == "other_models":
            event = next_event(ws, "forecast", limit=1000)
    assert (event["change"], event["champion"]["version"]) == ("new_champion", new.version)
