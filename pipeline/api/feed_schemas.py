"""The messages of the ``/ws`` live feed (pydantic v2): what a client sends and what it gets.

These models are the one definition of the feed's wire format: the hub
(:mod:`pipeline.api.feed`) serialises every event with them, the socket route
(:mod:`pipeline.api.routes.ws`) validates client messages with them, and the OpenAPI document
shows them (``GET /ws``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The most series one subscribe or unsubscribe message may name.
MAX_SERIES_PER_MESSAGE = 100
#: The largest client message accepted (bytes of text); longer ones get an error event.
MAX_MESSAGE_BYTES = 8192

SeriesName = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9-]{1,80}$",
        description="a series name: <coin>-<vs_currency>-<timeframe>, e.g. bitcoin-usd-1d",
        examples=["bitcoin-usd-1d"],
    ),
]
HealthStatus = Literal["ok", "stale", "expired"]
Change = Literal["new_champion", "new_issue", "other_models", "removed"]


class ClientMessage(BaseModel):
    """What a client sends: ``subscribe`` / ``unsubscribe`` series, or ``ping``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"action": "subscribe", "series": ["bitcoin-usd-1d", "bitcoin-usd-1h"]}]
        },
    )

    action: Literal["subscribe", "unsubscribe", "ping"]
    series: list[SeriesName] = Field(
        default_factory=list,
        max_length=MAX_SERIES_PER_MESSAGE,
        description="the series to (un)subscribe; ignored by ping",
    )


class SeriesState(BaseModel):
    """What a series' champion serves now."""

    model_config = ConfigDict(protected_namespaces=())

    series: str
    model: str = Field(description="the champion's model name")
    version: str
    trained_at: datetime
    issued_at: datetime = Field(description="when the served forecast path (issue) was written")
    origin: datetime = Field(description="the last observed timestamp that path starts from")
    last_price: float = Field(description="the price at the origin")
    horizon: int
    status: HealthStatus = Field(
        description="ok; stale (older than STALE_AFTER_PERIODS, or past STALE_LIMIT_PERIODS); "
        "expired (every step of the path is past)"
    )


class PathPoint(BaseModel):
    """One step of a served forecast path (steps counted from the path's origin)."""

    timestamp: datetime
    step: int = Field(ge=1)
    mean: float
    lower_80: float
    upper_80: float
    lower_95: float
    upper_95: float


class ModelChange(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    version: str | None = Field(description="the version served now; null when it was removed")
    issued_at: datetime | None = None


class HelloEvent(BaseModel):
    """Sent once, when the connection is accepted."""

    type: Literal["hello"] = "hello"
    series: list[str] = Field(description="every series this worker serves")
    heartbeat_seconds: float
    pid: int = Field(description="the worker process: each worker pushes its own reloads")


class SubscribedEvent(BaseModel):
    """The answer to ``subscribe``: all series subscribed now, and the state of the new ones."""

    type: Literal["subscribed"] = "subscribed"
    series: list[str]
    states: list[SeriesState]


class UnsubscribedEvent(BaseModel):
    """The answer to ``unsubscribe``: the series still subscribed."""

    type: Literal["unsubscribed"] = "unsubscribed"
    series: list[str]


class ForecastEvent(BaseModel):
    """A new version or issue of a subscribed series was loaded (reload, polling or refresh)."""

    type: Literal["forecast"] = "forecast"
    series: str
    change: Change = Field(
        description="new_champion: the champion pointer moved (promotion or rollback); "
        "new_issue: the champion's version was re-issued from newer prices; other_models: only "
        "non-champion models changed; removed: the series has no champion any more"
    )
    champion: SeriesState | None
    models: list[ModelChange] = Field(description="every model of the series that changed")
    forecast: list[PathPoint] = Field(
        description="the champion's whole served path from its origin (a client keeps the steps "
        "after its own clock)"
    )
    published_at: datetime


class HealthEvent(BaseModel):
    """A subscribed series' champion changed health status (e.g. its forecast turned stale)."""

    type: Literal["health"] = "health"
    series: str
    status: HealthStatus
    previous: HealthStatus
    model: str
    version: str
    origin: datetime
    age_seconds: int
    age_periods: float
    at: datetime


class HeartbeatEvent(BaseModel):
    type: Literal["heartbeat"] = "heartbeat"
    at: datetime
    series: list[str] = Field(description="the series this connection is subscribed to")


class PongEvent(BaseModel):
    type: Literal["pong"] = "pong"
    at: datetime


class ErrorEvent(BaseModel):
    """A refused message (the connection stays open) or a refused connection (then closed)."""

    type: Literal["error"] = "error"
    error: str = Field(
        description="invalid_json, invalid_message, message_too_large, unknown_series; on a "
        "refused connection (then closed): unauthorized (1008), origin_not_allowed (1008), "
        "too_many_connections (1013), too_slow (1013), not_started (1011)",
        examples=["unknown_series"],
    )
    message: str
    available: list[str] | None = Field(None, description="the served series, on unknown_series")


ServerEvent = Annotated[
    HelloEvent
    | SubscribedEvent
    | UnsubscribedEvent
    | ForecastEvent
    | HealthEvent
    | HeartbeatEvent
    | PongEvent
    | ErrorEvent,
    Field(discriminator="type"),
]
