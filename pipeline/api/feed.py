"""The live feed's subscription hub: who listens to which series, and what they are sent.

One :class:`FeedHub` per worker process. Each WebSocket connection of ``/ws``
(:mod:`pipeline.api.routes.ws`) joins it as a :class:`Subscriber` with a bounded queue of
outgoing text frames; the route's one sender task drains that queue. Publishing an event is
one serialisation (pydantic, :mod:`pipeline.api.feed_schemas`) and one ``put_nowait`` per
subscriber of the series, so it never waits for a slow client: a client whose queue is full is
told ``too_slow`` and disconnected.

Events come from two places:

* :meth:`FeedHub.registry_changed`, called by :meth:`pipeline.api.deps.ApiRuntime.reload`
  after every registry swap (``POST /model/reload``, ``MODEL_POLL_SECONDS`` polling, anything
  that reloads): one ``forecast`` event per series whose served versions or issues changed;
* the heartbeat task (every ``WS_HEARTBEAT_SECONDS``): a ``heartbeat`` to every connection and
  a ``health`` event for each series whose champion changed status (ok, stale, expired).

With several workers each process has its own hub and pushes its own reloads only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pipeline.api.feed_schemas import (
    Change,
    ErrorEvent,
    ForecastEvent,
    HealthEvent,
    HealthStatus,
    HeartbeatEvent,
    HelloEvent,
    ModelChange,
    PathPoint,
    SeriesState,
)

if TYPE_CHECKING:
    from pipeline.api.deps import ApiRuntime
    from pipeline.api.registry import Registry
    from pipeline.api.served import ServedModel

logger = logging.getLogger(__name__)

#: Outgoing frames a connection may have waiting before it is dropped as too slow.
QUEUE_SIZE = 256


class Subscriber:
    """One connection: its subscribed series and its queue of outgoing text frames."""

    __slots__ = ("lagging", "queue", "series")

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(size)
        self.series: set[str] = set()
        #: set when an event could not be queued: the sender closes the connection
        self.lagging = False

    def offer(self, text: str) -> bool:
        """Queue ``text`` without waiting; False (and ``lagging``) when the queue is full."""
        if self.lagging:
            return False
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.lagging = True
            return False
        return True


def health_status(served: ServedModel, runtime: ApiRuntime, second: int) -> HealthStatus:
    """ok, stale or expired: what the prediction routes would say about ``served`` now."""
    assessment = served.moment(second, runtime.staleness).assessment
    if assessment.remaining == 0:
        return "expired"
    if assessment.stale or assessment.refusal is not None:
        return "stale"
    return "ok"


def series_state(served: ServedModel, status: HealthStatus) -> SeriesState:
    return SeriesState(
        series=served.series.name,
        model=served.model,
        version=served.version,
        trained_at=served.trained_at,
        issued_at=served.issued_at,
        origin=served.origin,
        last_price=served.summary.last_price,
        horizon=served.horizon,
        status=status,
    )


def path_points(served: ServedModel) -> list[PathPoint]:
    """The whole served path of ``served``, steps counted from its origin."""
    cols = served.path.columns
    return [
        PathPoint(
            timestamp=stamp,
            step=index + 1,
            mean=cols["mean"][index],
            lower_80=cols["lower_80"][index],
            upper_80=cols["upper_80"][index],
            lower_95=cols["lower_95"][index],
            upper_95=cols["upper_95"][index],
        )
        for index, stamp in enumerate(served.path.stamps)
    ]


def _issue_key(served: ServedModel) -> tuple[str, datetime, datetime]:
    return served.version, served.issued_at, served.origin


def forecast_events(
    old: Registry, new: Registry, runtime: ApiRuntime, now: datetime
) -> list[ForecastEvent]:
    """One ``forecast`` event per series whose served versions or issues differ; ``now`` is
    the ``published_at`` of the events (their health status is assessed at the API's clock)."""
    second = int(runtime.clock().timestamp())
    events = []
    for name in sorted({s for s, _ in old.models} | {s for s, _ in new.models}):
        models = sorted(
            {m for s, m in old.models if s == name} | {m for s, m in new.models if s == name}
        )
        changes = []
        for model in models:
            before, after = old.models.get((name, model)), new.models.get((name, model))
            if after is None:
                changes.append(ModelChange(model=model, version=None))
            elif before is None or _issue_key(before) != _issue_key(after):
                changes.append(
                    ModelChange(model=model, version=after.version, issued_at=after.issued_at)
                )
        was, champ = old.find(name), new.find(name)
        moved = (was is None) != (champ is None) or (
            was is not None
            and champ is not None
            and (was.model, was.version) != (champ.model, champ.version)
        )
        if not changes and not moved:
            continue
        change: Change
        if champ is None:
            change = "removed"
        elif moved:
            change = "new_champion"
        elif was is not None and _issue_key(was) != _issue_key(champ):
            change = "new_issue"
        else:
            change = "other_models"
        events.append(
            ForecastEvent(
                series=name,
                change=change,
                champion=None
                if champ is None
                else series_state(champ, health_status(champ, runtime, second)),
                models=changes,
                forecast=[] if champ is None else path_points(champ),
                published_at=now,
            )
        )
    return events


class FeedHub:
    """The subscribers of one worker and the events pushed to them (see the module doc)."""

    def __init__(self, runtime: ApiRuntime) -> None:
        self.runtime = runtime
        self.max_connections = 1000
        self.heartbeat_seconds = 20.0
        self.subscribers: set[Subscriber] = set()
        self._by_series: dict[str, set[Subscriber]] = {}
        self._health: dict[str, HealthStatus] = {}
        self._task: asyncio.Task[None] | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Read the settings and start the heartbeat task (in the app's lifespan)."""
        settings = self.runtime.settings
        if settings is not None:
            self.max_connections = settings.ws_max_connections
            self.heartbeat_seconds = settings.ws_heartbeat_seconds
        self._health = self._statuses()
        self._task = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- connections --------------------------------------------------------------------------
    def join(self) -> Subscriber | None:
        """A new subscriber, or None when ``WS_MAX_CONNECTIONS`` are connected."""
        if len(self.subscribers) >= self.max_connections:
            return None
        sub = Subscriber()
        self.subscribers.add(sub)
        return sub

    def leave(self, sub: Subscriber) -> None:
        self.unsubscribe(sub, list(sub.series))
        self.subscribers.discard(sub)

    def subscribe(self, sub: Subscriber, names: Iterable[str]) -> None:
        for name in names:
            sub.series.add(name)
            self._by_series.setdefault(name, set()).add(sub)

    def unsubscribe(self, sub: Subscriber, names: Iterable[str]) -> None:
        for name in names:
            sub.series.discard(name)
            listeners = self._by_series.get(name)
            if listeners is not None:
                listeners.discard(sub)
                if not listeners:
                    del self._by_series[name]

    def listeners(self, series: str) -> int:
        return len(self._by_series.get(series, ()))

    # -- what is sent -------------------------------------------------------------------------
    def hello(self) -> str:
        return HelloEvent(
            series=self._registry().series_names(),
            heartbeat_seconds=self.heartbeat_seconds,
            pid=os.getpid(),
        ).model_dump_json()

    def states(self, names: Iterable[str]) -> list[SeriesState]:
        """The current state of each named series that has a champion."""
        registry, second = self._registry(), int(self.runtime.clock().timestamp())
        out = []
        for name in names:
            served = registry.find(name)
            if served is not None:
                out.append(series_state(served, health_status(served, self.runtime, second)))
        return out

    def publish(self, series: str, text: str) -> int:
        """Queue ``text`` for every subscriber of ``series``; returns how many got it."""
        delivered = 0
        for sub in tuple(self._by_series.get(series, ())):
            delivered += sub.offer(text)
        return delivered

    def registry_changed(self, old: Registry, new: Registry) -> None:
        """After a registry swap: a ``forecast`` event per changed series to its subscribers."""
        try:
            events = forecast_events(old, new, self.runtime, datetime.now(UTC))
        except Exception:  # noqa: BLE001 - a feed failure must never fail the reload itself
            logger.exception("feed: cannot build the forecast events of a reload")
            return
        for event in events:
            delivered = self.publish(event.series, event.model_dump_json())
            logger.info(
                "feed: %s %s pushed to %d subscriber(s)",
                event.series,
                event.change,
                delivered,
                extra={"series": event.series, "change": event.change},
            )
            if event.champion is not None:
                self._health[event.series] = event.champion.status

    def check_health(self) -> list[HealthEvent]:
        """Compare each champion's status with the last one seen; push and return the changes."""
        now = self.runtime.clock()
        second = int(now.timestamp())
        registry = self._registry()
        events = []
        for name in registry.series_names():
            served = registry.find(name)
            if served is None:
                continue
            status = health_status(served, self.runtime, second)
            previous = self._health.get(name, status)
            self._health[name] = status
            if status == previous:
                continue
            age, periods = served.issue_age(now)
            event = HealthEvent(
                series=name,
                status=status,
                previous=previous,
                model=served.model,
                version=served.version,
                origin=served.origin,
                age_seconds=int(age),
                age_periods=round(periods, 3),
                at=now,
            )
            self.publish(name, event.model_dump_json())
            events.append(event)
        return events

    def heartbeat(self) -> None:
        at = datetime.now(UTC)
        for sub in tuple(self.subscribers):
            sub.offer(HeartbeatEvent(at=at, series=sorted(sub.series)).model_dump_json())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                self.check_health()
                self.heartbeat()
            except Exception:  # noqa: BLE001 - the feed must outlive a bad check
                logger.exception("feed heartbeat failed; will retry")

    # -- helpers ------------------------------------------------------------------------------
    def _registry(self) -> Registry:
        return self.runtime.registry_holder().registry

    def _statuses(self) -> dict[str, HealthStatus]:
        if self.runtime.holder is None:
            return {}
        registry, second = self._registry(), int(self.runtime.clock().timestamp())
        out: dict[str, HealthStatus] = {}
        for name in registry.series_names():
            served = registry.find(name)
            if served is not None:
                out[name] = health_status(served, self.runtime, second)
        return out


def error_event(code: str, message: str, available: list[str] | None = None) -> str:
    return ErrorEvent(error=code, message=message, available=available).model_dump_json()
