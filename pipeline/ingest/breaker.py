"""A circuit breaker on each data provider, shared by every process that ingests.

After ``BREAKER_FAILURES`` consecutive failed calls to a provider (a call fails when, after its
own retries, the provider could not be reached or kept answering 429/5xx) the circuit *opens*:
for ``BREAKER_COOLDOWN_SECONDS`` nothing calls the provider, every call is refused at once with
:class:`CircuitOpenError` (a :class:`~pipeline.errors.SourceUnavailableError`, so ``SOURCE=auto``
falls back as it does offline). After the cool-down the next call is let through as the one
*probe* (*half-open*; other callers keep being refused meanwhile): its success closes the
circuit, its failure opens it for another cool-down. A probe whose process died (no answer
recorded within one cool-down) lets another probe through.

The state lives in ``<data_dir>/breaker/<provider>.json`` (replaced atomically, read-modify-write
under an ``flock``), so the CLI, the scheduler and the refresh job agree; the scheduler's metrics
and ``/health/detailed`` read it with :func:`read_state`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import SourceUnavailableError
from pipeline.fileio import atomic_write_json

logger = logging.getLogger(__name__)

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
#: The gauge value of each state (``ingest_circuit_state``).
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
#: The providers a breaker guards (one state file each).
PROVIDERS = ("coingecko",)

Clock = Callable[[], float]


def wall_clock() -> float:
    """Unix seconds (wall clock: the state is shared between processes)."""
    return time.time()


class CircuitOpenError(SourceUnavailableError):
    """The provider's circuit is open: it is not called until the cool-down has passed."""


@dataclass(frozen=True)
class BreakerState:
    """What the state file holds."""

    provider: str
    state: str = CLOSED
    failures: int = 0  # consecutive failed calls
    opened_at: float | None = None
    probe_started_at: float | None = None
    last_error: str | None = None
    updated_at: float | None = None

    def retry_at(self, cooldown: float) -> float | None:
        """When an open circuit lets its probe through (``None`` unless open)."""
        return None if self.state != OPEN or self.opened_at is None else self.opened_at + cooldown

    def as_json(self, cooldown: float) -> dict[str, Any]:
        """The state as ``/health/detailed`` shows it (ISO timestamps)."""

        def iso(t: float | None) -> str | None:
            return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()

        return {
            "state": self.state,
            "consecutive_failures": self.failures,
            "opened_at": iso(self.opened_at),
            "retry_at": iso(self.retry_at(cooldown)),
            "last_error": self.last_error,
        }


def state_path(data_dir: Path, provider: str) -> Path:
    return Path(data_dir) / "breaker" / f"{provider}.json"


def read_state(data_dir: Path, provider: str) -> BreakerState:
    """The provider's recorded state; closed when never recorded or unreadable."""
    path = state_path(data_dir, provider)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        fields = {k: raw[k] for k in BreakerState.__dataclass_fields__ if k in raw}
        state = BreakerState(**{**fields, "provider": provider})
        if state.state not in STATE_VALUES or not isinstance(state.failures, int):
            raise ValueError(f"unknown state {state.state!r}")
        return state
    except FileNotFoundError:
        return BreakerState(provider)
    except (OSError, ValueError, TypeError) as exc:
        logger.warning(
            "%s: unreadable circuit-breaker state (%s); treating it as closed", path, exc
        )
        return BreakerState(provider)


class CircuitBreaker:
    """The breaker of one provider; call :meth:`before_call`, then :meth:`succeeded` or
    :meth:`failed`. ``failures=0`` turns it off (every call goes through, nothing is written)."""

    def __init__(
        self,
        provider: str,
        data_dir: Path,
        failures: int,
        cooldown: float,
        clock: Clock | None = None,
    ) -> None:
        self.provider, self.data_dir = provider, Path(data_dir)
        self.threshold, self.cooldown = failures, cooldown
        self.clock = clock or wall_clock
        self.path = state_path(self.data_dir, provider)

    @classmethod
    def from_settings(cls, provider: str, settings: Settings) -> CircuitBreaker:
        return cls(
            provider,
            settings.data_dir,
            settings.breaker_failures,
            settings.breaker_cooldown_seconds,
        )

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def state(self) -> BreakerState:
        return read_state(self.data_dir, self.provider)

    @contextmanager
    def _locked(self) -> Iterator[BreakerState]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self.state()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self, state: BreakerState) -> None:
        atomic_write_json(self.path, asdict(replace(state, updated_at=self.clock())))

    def before_call(self) -> None:
        """Refuse the call (:class:`CircuitOpenError`) unless the circuit lets it through."""
        if not self.enabled:
            return
        with self._locked() as current:
            now = self.clock()
            if current.state == CLOSED:
                return
            if current.state == HALF_OPEN and (current.probe_started_at or 0) + self.cooldown > now:
                raise CircuitOpenError(self._refusal(current, "a probe call is under way"))
            retry_at = current.retry_at(self.cooldown)
            if current.state == OPEN and retry_at is not None and retry_at > now:
                wait = f"not called until {datetime.fromtimestamp(retry_at, UTC):%H:%M:%S} UTC"
                raise CircuitOpenError(self._refusal(current, wait))
            self._save(replace(current, state=HALF_OPEN, probe_started_at=now))
        logger.info("%s: circuit half-open, sending one probe call", self.provider)

    def _refusal(self, state: BreakerState, why: str) -> str:
        return (
            f"{self.provider}: circuit open after {state.failures} consecutive failed call(s) "
            f"(last: {state.last_error or 'unknown'}); {why} (BREAKER_COOLDOWN_SECONDS="
            f"{self.cooldown:g}); check the provider, or use --source sample / --source csv:PATH"
        )

    def succeeded(self) -> None:
        """The provider answered: close the circuit (a no-op write when already closed)."""
        if not self.enabled:
            return
        with self._locked() as current:
            if current.state == CLOSED and current.failures == 0:
                return
            if current.state != CLOSED:
                logger.warning("%s: provider answered again; circuit closed", self.provider)
            self._save(BreakerState(self.provider))

    def failed(self, error: str) -> None:
        """One more consecutive failed call; opens the circuit at the threshold (or when the
        half-open probe failed)."""
        if not self.enabled:
            return
        error = error if len(error) <= 300 else error[:297] + "..."
        with self._locked() as current:
            failures = current.failures + 1
            if current.state == HALF_OPEN or failures >= self.threshold:
                logger.error(
                    "%s: circuit OPEN after %d consecutive failed call(s): no calls for %gs "
                    "(last error: %s)",
                    self.provider,
                    failures,
                    self.cooldown,
                    error,
                )
                self._save(BreakerState(self.provider, OPEN, failures, self.clock(), None, error))
            else:
                self._save(replace(current, failures=failures, last_error=error))
