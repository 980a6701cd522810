"""One call budget for a data provider, shared by every process that ingests during a run.

CoinGecko allows about 30 calls a minute without a key. A cycle over hundreds of series, on one
machine or on a Dask cluster, must not turn that into a storm of HTTP 429 answers, so every
CoinGecko call first takes its turn from one :class:`CallBudget`: a token bucket in the GCRA
form (``COINGECKO_BURST`` calls at once, then one every ``60 / COINGECKO_CALLS_PER_MINUTE``
seconds). In any window of ``W`` seconds at most ``burst + W * rate`` calls start.

A 429 answer pauses the whole budget for its ``Retry-After`` (one interval when the header is
missing), and the next calls come at the steady pace without a burst. A caller that slept until
its turn looks again before calling, so a pause registered meanwhile (by another worker) holds
it too.

Where the state lives is pluggable: :class:`LocalState` (threads of one process) or
:class:`DaskState` (a record in the Dask scheduler's metadata guarded by a one-lease
``distributed.Semaphore``: every worker of a cluster, on any host; the semaphore's lease is
dropped if its holder dies).
A run installs its budget with :func:`use` (a context variable, so threads started with the
caller's context see it); the CoinGecko client calls :func:`before_call` and
:func:`rate_limited`, which do nothing when no budget is installed (a one-off CLI ingest). The
:class:`Meter` that :func:`use` returns adds up how long the run waited.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from pipeline.config import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
#: How often a caller re-reserves after pauses registered while it slept (bounded loop).
MAX_REBOOKINGS = 20


@dataclass(frozen=True)
class BucketState:
    """``tat``: the theoretical arrival time of the next call (GCRA); ``paused_until``: no
    call starts before this (a 429's ``Retry-After``). Both are unix seconds."""

    tat: float = 0.0
    paused_until: float = 0.0


def reserve(
    state: BucketState, now: float, interval: float, burst: int
) -> tuple[BucketState, float]:
    """The new state and when a call asked for at ``now`` may start (GCRA with a pause)."""
    tolerance = (burst - 1) * interval
    start = max(now, state.tat - tolerance, state.paused_until)
    return BucketState(max(state.tat, start) + interval, state.paused_until), start


def pause(state: BucketState, until: float, interval: float, burst: int) -> BucketState:
    """The state after a 429: nothing before ``until``, then the steady pace (no burst)."""
    if until <= state.paused_until:
        return state
    tolerance = (burst - 1) * interval
    return BucketState(max(state.tat, until + tolerance), until)


class SharedState(Protocol):
    """Where a budget's :class:`BucketState` lives; ``update`` is atomic across its users."""

    def update(self, change: Callable[[BucketState], tuple[BucketState, T]]) -> T: ...


class LocalState:
    """The state in this process (threads share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = BucketState()

    def update(self, change: Callable[[BucketState], tuple[BucketState, T]]) -> T:
        with self._lock:
            self._state, out = change(self._state)
            return out


#: The mutex of each Dask budget, one per process (creating it costs a scheduler round trip).
_DASK_MUTEXES: dict[str, Any] = {}
_DASK_LOCK = threading.Lock()


class DaskState:
    """The state on a Dask cluster: shared by every worker (and the driver) of it.

    The state is a small record in the scheduler's metadata (``Client.set_metadata``), changed
    under a one-lease ``distributed.Semaphore`` (whose lease is dropped if its holder dies).
    Picklable: it travels to the workers by name. The record outlives a run, so runs one after
    the other on one cluster share the budget too.
    """

    def __init__(self, name: str, timeout: float = 60.0) -> None:
        self.name, self.timeout = name, timeout

    def _mutex(self) -> Any:
        from distributed import Semaphore

        with _DASK_LOCK:
            if self.name not in _DASK_MUTEXES:
                _DASK_MUTEXES[self.name] = Semaphore(max_leases=1, name=f"{self.name}-mutex")
            return _DASK_MUTEXES[self.name]

    def update(self, change: Callable[[BucketState], tuple[BucketState, T]]) -> T:
        from distributed import get_client

        mutex = self._mutex()
        if not mutex.acquire(timeout=self.timeout):
            raise TimeoutError(f"the call budget {self.name} stayed locked for {self.timeout:g} s")
        try:
            client, key = get_client(), ["pipeline-call-budget", self.name]
            recorded = client.get_metadata(key, default=None)
            new, out = change(BucketState(**recorded) if recorded else BucketState())
            client.set_metadata(key, asdict(new))
            return out
        finally:
            mutex.release()

    def close(self) -> None:
        """Forget this process's handle (the driver, before its client closes)."""
        with _DASK_LOCK:
            mutex = _DASK_MUTEXES.pop(self.name, None)
        if mutex is not None:
            with contextlib.suppress(Exception):  # the cluster may be gone already
                mutex.close()


class CallBudget:
    """``burst`` calls at once, then ``calls_per_minute``; see the module text."""

    def __init__(
        self,
        state: SharedState,
        calls_per_minute: float,
        burst: int = 1,
        *,
        clock: Clock = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls_per_minute <= 0:
            raise ValueError("calls_per_minute must be positive (no budget means no limit)")
        self.state, self.burst = state, max(1, burst)
        self.interval = 60.0 / calls_per_minute
        self.clock, self.sleep = clock, sleep

    def acquire(self) -> float:
        """Wait for this call's turn; the seconds waited."""
        waited = 0.0
        for _ in range(MAX_REBOOKINGS):
            now = self.clock()
            start = self.state.update(self._booking(now))
            if start > now:
                self.sleep(start - now)
                waited += start - now
            # A pause registered while we slept holds this call too.
            paused_until = self.state.update(lambda s: (s, s.paused_until))
            if paused_until <= max(start, self.clock()):
                break
        return waited

    def _booking(self, now: float) -> Callable[[BucketState], tuple[BucketState, float]]:
        return lambda s: reserve(s, now, self.interval, self.burst)

    def pause(self, seconds: float | None) -> float:
        """Hold every user of the budget for ``seconds`` (one interval when ``None``); the end."""
        until = self.clock() + (self.interval if seconds is None else max(0.0, seconds))
        self.state.update(lambda s: (pause(s, until, self.interval, self.burst), None))
        return until


@dataclass
class Meter:
    """What the calls made under one :func:`use` waited, and how many 429s they met."""

    calls: int = 0
    waited_seconds: float = 0.0
    rate_limited: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, waited: float = 0.0, calls: int = 0, limited: int = 0) -> None:
        with self._lock:
            self.calls += calls
            self.waited_seconds += waited
            self.rate_limited += limited


_ACTIVE: contextvars.ContextVar[tuple[CallBudget, Meter] | None] = contextvars.ContextVar(
    "call_budget", default=None
)


@contextlib.contextmanager
def use(budget: CallBudget | None) -> Iterator[Meter]:
    """Make ``budget`` the one every CoinGecko call in this context takes its turn from."""
    meter = Meter()
    token = _ACTIVE.set((budget, meter) if budget is not None else None)
    try:
        yield meter
    finally:
        _ACTIVE.reset(token)


def before_call() -> None:
    """Wait for the installed budget (if any); the CoinGecko client calls it per request."""
    active = _ACTIVE.get()
    if active is None:
        return
    budget, meter = active
    waited = budget.acquire()
    meter.add(waited=waited, calls=1)
    if waited >= 1.0:
        logger.debug("waited %.1f s for the CoinGecko call budget", waited)


def rate_limited(retry_after: float | None) -> None:
    """A 429 arrived: pause the installed budget (every process sharing it) for ``retry_after``."""
    active = _ACTIVE.get()
    if active is None:
        return
    budget, meter = active
    until = budget.pause(retry_after)
    meter.add(limited=1)
    logger.warning(
        "CoinGecko answered 429: every caller of the budget waits %.1f s",
        max(0.0, until - budget.clock()),
    )


def budget_for(settings: Settings, state: SharedState | None = None) -> CallBudget | None:
    """The CoinGecko budget the settings ask for (``None`` when unlimited), on ``state``
    (default: this process only)."""
    if settings.coingecko_calls_per_minute <= 0:
        return None
    return CallBudget(
        state or LocalState(), settings.coingecko_calls_per_minute, settings.coingecko_burst
    )


__all__ = [
    "BucketState",
    "CallBudget",
    "DaskState",
    "LocalState",
    "Meter",
    "before_call",
    "budget_for",
    "pause",
    "rate_limited",
    "reserve",
    "use",
]
