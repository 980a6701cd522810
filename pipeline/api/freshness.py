"""How fresh a served forecast is: where "now" falls in its path, its age, the stale rules.

Every served model answers from one *issue*: a forecast path written from an *origin* (the last
observed timestamp) at an *issue time* (by the training run that made the version, and later by
a refresh of it from newer prices). An answer starts at the first step strictly after the time
of the request, so a step that is already past is never served. :func:`assess` finds that step
and the issue's age for one second; :class:`~pipeline.api.served.ServedModel` caches the result,
so the search runs at most once per second per served model, not per request or per point.

The rules (:class:`Staleness`, from the settings): an answer is flagged ``stale`` when the issue
is older than ``STALE_AFTER_PERIODS`` periods of its frequency, or when fewer steps remain than
were asked (the remaining ones are answered); it is refused (503) when no step remains, or past
``STALE_LIMIT_PERIODS`` periods when that hard limit is on.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.api.wire import iso

if TYPE_CHECKING:
    from pipeline.api.served import ServedModel
    from pipeline.config import Settings

#: What writes a new issue, for the messages that say how a forecast gets renewed.
RENEWED_BY = "a new issue is written by the nightly training (and the refresh job when enabled)"


def utc_now() -> datetime:
    """The default clock of the API (tests inject a frozen one)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Staleness:
    """When an answer is flagged stale, and when it is refused (ages in periods)."""

    #: flagged ``stale`` past this age (``STALE_AFTER_PERIODS``)
    after_periods: float = 2.0
    #: refused (503) past this age; 0 = never (``STALE_LIMIT_PERIODS``)
    limit_periods: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Staleness:
        return cls(settings.stale_after_periods, settings.stale_limit_periods)


@dataclass(frozen=True, slots=True)
class Assessment:
    """Where one second falls in a forecast path, and what the rules say about it."""

    #: the Unix second assessed
    second: int
    #: steps of the path at or before that second (the first served step is ``offset + 1``)
    offset: int
    #: steps of the path after that second
    remaining: int
    age_seconds: int
    #: the age in periods, to 3 decimals (as answered)
    age_periods: float
    #: older than ``Staleness.after_periods``
    stale: bool
    #: why nothing can be answered (HTTP 503), with its error code; None when it can answer
    refusal: tuple[str, str] | None


def assess(
    second: int,
    *,
    stamps: Sequence[int],
    origin: int,
    period: int,
    policy: Staleness,
    what: str,
    freq: str,
) -> Assessment:
    """Assess the path whose steps are at ``stamps`` (Unix seconds, ascending) at ``second``.

    ``origin`` is the issue's origin (Unix seconds), ``period`` the length of one step in
    seconds, ``what`` names the served model in refusals (``bitcoin-usd-1h/drift (version)``).
    Stamps are whole seconds, so a step at ``second`` is past for the whole of that second.
    """
    offset = bisect_right(stamps, second)
    remaining = len(stamps) - offset
    age = max(0, second - origin)
    refusal = None
    if remaining == 0:
        refusal = (
            f"{what}: every step of its forecast is in the past: the path from origin "
            f"{iso(datetime.fromtimestamp(origin, UTC))} ended at "
            f"{iso(datetime.fromtimestamp(stamps[-1], UTC))}; it is renewed when {RENEWED_BY}: "
            "check the retrain scheduler",
            "forecast_expired",
        )
    elif policy.limit_periods and age > policy.limit_periods * period:
        refusal = (
            f"{what}: the forecast from origin {iso(datetime.fromtimestamp(origin, UTC))} is "
            f"{age / period:.2f} periods of {freq} old, beyond STALE_LIMIT_PERIODS="
            f"{policy.limit_periods:g}; it is renewed when {RENEWED_BY}: check the retrain "
            "scheduler",
            "forecast_stale",
        )
    return Assessment(
        second=second,
        offset=offset,
        remaining=remaining,
        age_seconds=age,
        age_periods=round(age / period, 3),
        stale=age > policy.after_periods * period,
        refusal=refusal,
    )


class IssueAgeCollector(Collector):
    """``forecast_issue_age_seconds`` and ``forecast_issue_age_periods`` at scrape time.

    One sample per served series and model (labels ``series``, ``model``, ``champion`` =
    ``true``/``false``): the age of the issue it answers from, measured from the issue's origin
    at the API's clock, in seconds and in periods of the series' frequency.
    """

    def __init__(
        self, models: Callable[[], Iterable[ServedModel]], clock: Callable[[], datetime]
    ) -> None:
        self._models = models
        self._clock = clock

    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ["series", "model", "champion"]
        seconds = GaugeMetricFamily(
            "forecast_issue_age_seconds",
            "Seconds since the origin of the forecast issue each served model answers from",
            labels=labels,
        )
        periods = GaugeMetricFamily(
            "forecast_issue_age_periods",
            "Age of the served forecast issue in periods of the series' frequency",
            labels=labels,
        )
        now = self._clock()
        for served in self._models():
            age, age_periods = served.issue_age(now)
            values = [served.series.name, served.model, "true" if served.is_champion else "false"]
            seconds.add_metric(values, age)
            periods.add_metric(values, age_periods)
        yield seconds
        yield periods
