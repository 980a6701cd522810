"""Where "now" falls in a forecast path, the issue's age, the stale rules and the age gauges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pipeline.api.freshness import IssueAgeCollector, Staleness, assess
from pipeline.api.registry import load_registry
from pipeline.api.served import DEFAULT_STALENESS
from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings
from tests.helpers.serving import BTC_1D, BTC_1H, ORIGIN, FrozenClock, build_models, metric_samples

T0 = 1_000_000  # an origin, in Unix seconds
STAMPS = [T0 + 3600 * k for k in range(1, 5)]  # four hourly steps after it


#: assess() on that path: ``path_at(second, policy=...)``
path_at = partial(assess, stamps=STAMPS, origin=T0, period=3600, what="s/m", freq="1h")


def at(second: int, policy: Staleness = DEFAULT_STALENESS) -> tuple[int, int, int, float, bool]:
    a = path_at(second, policy=policy)
    return a.offset, a.remaining, a.age_seconds, a.age_periods, a.stale


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        (T0 - 10, (0, 4, 0, 0.0, False)),
        (T0, (0, 4, 0, 0.0, False)),
        (T0 + 3599, (0, 4, 3599, 1.0, False)),  # 0.99972 periods, to 3 decimals
        (T0 + 3600, (1, 3, 3600, 1.0, False)),  # on step 1: it is past
        (T0 + 7200, (2, 2, 7200, 2.0, False)),  # exactly two periods: not older than two
        (T0 + 7201, (2, 2, 7201, 2.0, True)),
        (T0 + 14399, (3, 1, 14399, 4.0, True)),
        (T0 + 14400, (4, 0, 14400, 4.0, True)),  # on the last step: none left
    ],
)
def test_assess_finds_the_first_step_after_the_second(
    second: int, expected: tuple[int, int, int, float, bool]
) -> None:
    assert at(second) == expected


def test_refusals_past_the_path_and_past_the_hard_limit() -> None:
    policy = Staleness(after_periods=1, limit_periods=1.5)
    assert path_at(T0 + 5400, policy=policy).refusal is None
    too_old = path_at(T0 + 5401, policy=policy).refusal
    assert too_old is not None and too_old[1] == "forecast_stale"
    assert "is 1.50 periods of 1h old, beyond STALE_LIMIT_PERIODS=1.5" in too_old[0]
    none_left = path_at(T0 + 14400, policy=policy).refusal
    assert none_left is not None and none_left[1] == "forecast_expired"  # the more specific one
    assert "ended at 1970-01-12T17:46:40Z" in none_left[0]
    off = Staleness(after_periods=1, limit_periods=0)
    assert path_at(T0 + 14399, policy=off).refusal is None


def test_the_rules_come_from_the_settings() -> None:
    assert Staleness.from_settings(Settings()) == Staleness(after_periods=2, limit_periods=0)
    custom = Settings(stale_after_periods=1.5, stale_limit_periods=6)
    assert Staleness.from_settings(custom) == Staleness(after_periods=1.5, limit_periods=6)


def test_the_gauges_report_each_served_issues_age(store: ArtifactStore) -> None:
    build_models(store.root)
    served = list(load_registry(store).models.values())
    clock = FrozenClock(ORIGIN + timedelta(hours=30))
    registry = CollectorRegistry()
    registry.register(IssueAgeCollector(lambda: served, clock))
    text = generate_latest(registry).decode()
    seconds = metric_samples(text, "forecast_issue_age_seconds")
    periods = metric_samples(text, "forecast_issue_age_periods")
    labels = {"series": BTC_1H.name, "model": "drift", "champion": "true"}
    assert (labels, 108000.0) in seconds and (labels, 30.0) in periods
    daily = {"series": BTC_1D.name, "model": "naive", "champion": "false"}
    assert (daily, 108000.0) in seconds and (daily, 1.25) in periods
    assert len(seconds) == len(periods) == 4
    clock.set(datetime(2026, 11, 20, tzinfo=UTC))  # before the origin: 0, never negative
    later = generate_latest(registry).decode()
    assert {value for _, value in metric_samples(later, "forecast_issue_age_seconds")} == {0.0}
