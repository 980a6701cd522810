"""The circuit breaker on CoinGecko: unit transitions on an injected clock, then the real ingest,
refresh and metrics paths against the fake CoinGecko server that stays down, then comes back."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pipeline.config import get_settings
from pipeline.errors import IngestError
from pipeline.ingest import breaker, cli, ingest_series, read_meta
from pipeline.ingest.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreaker,
    CircuitOpenError,
    read_state,
    state_path,
)
from pipeline.refresh.stage import refresh_many
from pipeline.scheduling.cycle import run_stage
from pipeline.scheduling.metrics import metrics_text
from pipeline.series import SeriesId
from tests.helpers.coingecko import FakeCoinGecko

BTC_1D = SeriesId("bitcoin", "usd", "1d")


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _breaker(tmp_path: Path, clock: Clock, failures: int = 3) -> CircuitBreaker:
    return CircuitBreaker("coingecko", tmp_path / "data", failures, 60.0, clock)


def test_opens_after_k_failures_then_one_probe_closes_it(tmp_path: Path) -> None:
    clock = Clock()
    cb = _breaker(tmp_path, clock)
    for _ in range(2):
        cb.before_call()
        cb.failed("HTTP 503")
    assert cb.state().state == CLOSED and cb.state().failures == 2
    cb.before_call()
    cb.failed("HTTP 503 again")
    state = cb.state()
    assert (state.state, state.failures, state.last_error) == (OPEN, 3, "HTTP 503 again")
    clock.now += 59
    with pytest.raises(CircuitOpenError, match=r"circuit open after 3 consecutive failed call"):
        cb.before_call()
    clock.now += 1
    cb.before_call()  # the probe
    assert cb.state().state == HALF_OPEN
    with pytest.raises(CircuitOpenError, match="a probe call is under way"):
        _breaker(tmp_path, clock).before_call()  # another process meanwhile
    cb.succeeded()
    assert cb.state() == read_state(tmp_path / "data", "coingecko")
    assert (cb.state().state, cb.state().failures) == (CLOSED, 0)
    cb.before_call()


def test_failed_probe_reopens_and_a_dead_probe_lets_another_through(tmp_path: Path) -> None:
    clock = Clock()
    cb = _breaker(tmp_path, clock, failures=1)
    cb.failed("timed out")
    clock.now += 60
    cb.before_call()
    cb.failed("still down")
    assert (cb.state().state, cb.state().opened_at) == (OPEN, clock.now)
    clock.now += 60
    cb.before_call()  # a probe whose process is killed: nothing is recorded
    clock.now += 59
    with pytest.raises(CircuitOpenError):
        cb.before_call()
    clock.now += 1
    cb.before_call()
    assert cb.state().state == HALF_OPEN and cb.state().probe_started_at == clock.now


def test_success_resets_the_count_and_off_writes_nothing(tmp_path: Path) -> None:
    cb = _breaker(tmp_path, Clock())
    cb.failed("x")
    cb.failed("x")
    cb.succeeded()
    cb.failed("x")
    assert cb.state().failures == 1 and cb.state().state == CLOSED
    off = CircuitBreaker("coingecko", tmp_path / "off", 0, 60.0)
    for _ in range(5):
        off.before_call()
        off.failed("x")
    assert not (tmp_path / "off").exists()


def test_unreadable_state_counts_as_closed(tmp_path: Path) -> None:
    path = state_path(tmp_path / "data", "coingecko")
    path.parent.mkdir(parents=True)
    path.write_text('{"state": "ajar", "failures": 1}')
    assert read_state(tmp_path / "data", "coingecko").state == CLOSED
    path.write_text("{trunc")
    cb = _breaker(tmp_path, Clock())
    cb.before_call()
    cb.failed("x")
    assert json.loads(path.read_text())["failures"] == 1


def test_concurrent_failures_are_all_counted(tmp_path: Path) -> None:
    cb = CircuitBreaker("coingecko", tmp_path / "data", 1000, 60.0)
    threads = [
        threading.Thread(target=lambda: [cb.failed("x") for _ in range(20)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cb.state().failures == 80


def test_open_circuit_is_not_retried_by_the_scheduler_stage() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise CircuitOpenError("coingecko: circuit open")

    with pytest.raises(CircuitOpenError):
        run_stage("ingest", refused, 5.0, threading.Event(), retries=3)
    assert calls == [1]


def test_provider_down_then_back(
    fake_coingecko: FakeCoinGecko, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(2_000_000_000.0)
    monkeypatch.setattr(breaker, "wall_clock", clock)
    monkeypatch.setenv("HTTP_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("BREAKER_FAILURES", "3")
    monkeypatch.setenv("BREAKER_COOLDOWN_SECONDS", "600")
    monkeypatch.setenv("SOURCE", "coingecko")
    monkeypatch.setenv("COINS", "bitcoin")
    monkeypatch.setenv("FREQUENCIES", "1d")
    get_settings.cache_clear()
    settings = get_settings()
    fake_coingecko.always = "503"

    for _ in range(3):
        with pytest.raises(IngestError, match="HTTP 503 after 2 attempt"):
            ingest_series(BTC_1D, settings, days=30)
    assert len(fake_coingecko.requests) == 6
    assert 'ingest_circuit_state{provider="coingecko"} 2.0' in metrics_text(settings)

    # Open: the CLI, the refresh job and SOURCE=auto call nothing while it cools down.
    assert cli.main(["--coin", "bitcoin", "--freq", "1d", "--days", "30"]) == 1
    (refresh,) = refresh_many([BTC_1D], settings)
    assert refresh.status == "failed" and "circuit open" in (refresh.reason or "")
    auto = ingest_series(BTC_1D, settings, source="auto", days=30)
    assert auto.source_used == "sample"
    assert len(fake_coingecko.requests) == 6

    # Back up, but still cooling down: untouched.
    fake_coingecko.always = None
    clock.now += 599
    with pytest.raises(CircuitOpenError):
        ingest_series(BTC_1D, settings, days=30)
    assert len(fake_coingecko.requests) == 6

    # After the cool-down one probe goes through, succeeds and closes the circuit.
    clock.now += 1
    result = ingest_series(BTC_1D, settings, days=30)
    assert result.source_used == "coingecko" and len(fake_coingecko.requests) == 7
    assert read_state(settings.data_dir, "coingecko").state == CLOSED
    assert (read_meta(result.path) or {})["simulated"] is False
    assert 'ingest_circuit_state{provider="coingecko"} 0.0' in metrics_text(settings)
