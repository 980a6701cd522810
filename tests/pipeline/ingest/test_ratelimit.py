"""The CoinGecko call budget: pace, burst, a 429's pause for every caller, the meter, and the
client taking its turns (against the CoinGecko imitation)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.config import load_settings
from pipeline.ingest import ratelimit
from pipeline.ingest.coingecko import CoinGeckoClient
from pipeline.ingest.ratelimit import BucketState, CallBudget, LocalState, pause, reserve
from tests.helpers.cluster import RateLimitedCoinGecko


class FakeClock:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def budget(clock: FakeClock, per_minute: float = 60.0, burst: int = 3) -> CallBudget:
    return CallBudget(LocalState(), per_minute, burst, clock=clock, sleep=clock.sleep)


def test_a_burst_then_the_steady_pace() -> None:
    clock = FakeClock()
    calls = budget(clock, per_minute=60, burst=3)
    waits = [calls.acquire() for _ in range(6)]
    assert waits == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert clock.now == 1003.0


def test_an_idle_budget_refills_its_burst() -> None:
    clock = FakeClock()
    calls = budget(clock, per_minute=60, burst=2)
    assert [calls.acquire() for _ in range(3)] == [0.0, 0.0, 1.0]
    clock.now += 10
    assert [calls.acquire() for _ in range(3)] == [0.0, 0.0, 1.0]


def test_no_window_holds_more_than_burst_plus_pace() -> None:
    state, starts = BucketState(), []
    for k in range(200):  # callers asking at random-ish times, faster than the pace
        state, start = reserve(state, now=k * 0.13, interval=2.0, burst=5)
        starts.append(start)
    for t in starts:
        assert sum(1 for u in starts if t <= u < t + 60.0) <= 5 + 30


def test_a_429_pauses_every_caller_then_the_pace_resumes_without_a_burst() -> None:
    clock = FakeClock()
    calls = budget(clock, per_minute=60, burst=3)
    calls.acquire()
    until = calls.pause(5.0)
    assert until == 1005.0
    assert calls.acquire() == 5.0  # another caller waits for the pause
    assert [calls.acquire() for _ in range(2)] == [1.0, 1.0]  # no burst right after it


def test_a_pause_without_retry_after_is_one_interval_and_a_shorter_one_changes_nothing() -> None:
    state = pause(BucketState(), until=10.0, interval=2.0, burst=3)
    assert state == BucketState(tat=14.0, paused_until=10.0)
    assert pause(state, until=8.0, interval=2.0, burst=3) == state
    clock = FakeClock()
    calls = budget(clock, per_minute=30, burst=1)
    assert calls.pause(None) == 1002.0


def test_a_pause_registered_while_a_caller_slept_holds_it_too() -> None:
    clock = FakeClock()
    shared = LocalState()
    other = CallBudget(shared, 60, 1, clock=clock, sleep=clock.sleep)

    def sleep_while_another_is_refused(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.slept) == 1:  # during the first sleep another worker meets a 429
            other.pause(3.0)

    mine = CallBudget(shared, 60, 1, clock=clock, sleep=sleep_while_another_is_refused)
    mine.acquire()
    assert mine.acquire() == 1.0 + 3.0  # its turn, then the pause that came meanwhile
    assert clock.now == 1004.0


def test_no_budget_means_no_limit_and_the_setting_makes_one() -> None:
    assert ratelimit.budget_for(load_settings(coingecko_calls_per_minute=0)) is None
    made = ratelimit.budget_for(load_settings(coingecko_calls_per_minute=30, coingecko_burst=4))
    assert made is not None and made.interval == 2.0 and made.burst == 4
    with pytest.raises(ValueError, match="calls_per_minute must be positive"):
        CallBudget(LocalState(), 0)
    ratelimit.before_call()  # nothing installed: returns at once
    ratelimit.rate_limited(10.0)


def test_the_client_takes_its_turns_and_a_429_pauses_the_budget() -> None:
    fake = RateLimitedCoinGecko(now=datetime(2026, 11, 20, tzinfo=UTC)).start()
    try:
        fake.faults = ["429-retry-after"]
        fake.retry_after = "0"
        settings = load_settings(coingecko_base_url=fake.base_url, http_max_attempts=3)
        clock = FakeClock()
        calls = CallBudget(LocalState(), 60, 2, clock=clock, sleep=clock.sleep)
        with ratelimit.use(calls) as meter, CoinGeckoClient(settings) as client:
            client.market_chart("bitcoin", "usd", 3)
            client.market_chart("bitcoin", "usd", 3)
        # refused, retried at the end of the (empty) pause, then the second call one interval
        # later: after a 429 the burst is gone
        assert [limited for _, limited in fake.arrivals] == [True, False, False]
        assert meter.calls == 3 and meter.rate_limited == 1
        assert clock.slept == [1.0] and meter.waited_seconds == pytest.approx(1.0)
    finally:
        fake.stop()
