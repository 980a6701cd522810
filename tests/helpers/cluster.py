"""Helpers of the cluster tests: stages that run anywhere (module-level, so Dask workers import
them), a fixed clock for the offline sample, a CoinGecko imitation with a rate limit, the
settings of a quick real cycle, and a ``dask scheduler`` / ``dask worker`` process pair."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings, load_settings
from pipeline.scheduling.cycle import Stages, default_stages
from pipeline.series import SeriesId
from tests.helpers.coingecko import FakeCoinGecko
from tests.helpers.paths import ROOT
from tests.helpers.processes import free_port

#: The models of the quick real cycles.
MODELS = ["naive", "drift", "garch"]
#: The offline sample's "now" in these tests: every run sees the same data.
FIXED_NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def sample_ingest(series: SeriesId, settings: Settings) -> Any:
    """The real ingest stage on the offline sample, at :data:`FIXED_NOW`."""
    from pipeline.ingest import ingest_series

    if series.coin == "brokencoin":
        raise RuntimeError("injected ingest failure")
    return ingest_series(series, settings, source="sample", now=FIXED_NOW)


def coingecko_ingest(series: SeriesId, settings: Settings) -> Any:
    """The real ingest stage from CoinGecko (an imitation serving at :data:`FIXED_NOW`)."""
    from pipeline.ingest import ingest_series

    return ingest_series(series, settings, source="coingecko", now=FIXED_NOW)


def no_process(series: SeriesId, settings: Settings) -> None:
    """A process stage that does nothing."""


def sample_stages() -> Stages:
    """The real stages (process, train, backtest gate), ingesting the fixed offline sample."""
    return replace(default_stages(), ingest=sample_ingest)


def champions(settings: Settings) -> dict[str, tuple[str, str]]:
    """Per series: the champion's model and the bytes of its forecast path."""
    store = ArtifactStore(Path(settings.models_dir))
    out = {}
    for series in settings.series():
        pointer = store.champion(series)
        if pointer is None:
            continue
        path = store.version_dir(series, pointer.model, pointer.version) / "forecast.csv"
        out[series.name] = (pointer.model, path.read_text())
    return out


@dataclass
class RateLimitedCoinGecko(FakeCoinGecko):
    """The CoinGecko imitation with a sliding-window limit: more than ``limit`` requests within
    ``window`` seconds are answered 429 with ``Retry-After: retry_after``. ``arrivals`` holds
    each market-chart request's (monotonic time, answered 429?)."""

    limit: int = 1000
    window: float = 1.0
    arrivals: list[tuple[float, bool]] = field(default_factory=list)
    _count_lock: threading.Lock = field(default_factory=threading.Lock)

    def _next_fault(self) -> str | None:
        now = time.monotonic()
        with self._count_lock:
            recent = [t for t, _ in self.arrivals if t > now - self.window]
            forced = super()._next_fault()
            limited = forced in ("429", "429-retry-after") or len(recent) >= self.limit
            self.arrivals.append((now, limited))
        if limited:
            return "429-retry-after"
        return forced

    @property
    def refused(self) -> int:
        return sum(limited for _, limited in self.arrivals)

    def most_in_window(self) -> int:
        """The most requests that arrived within any ``window`` seconds."""
        times = sorted(t for t, _ in self.arrivals)
        return max((sum(1 for u in times if t <= u < t + self.window) for t in times), default=0)


def small(tmp: Path, name: str, **overrides: object) -> Settings:
    """Settings of a quick real cycle in ``tmp/name``."""
    values: dict[str, object] = {
        "coins": ["bitcoin", "ethereum"],
        "frequencies": ["1d", "1h", "4h"],
        "history_days": 60,
        "backtest_origins": 3,
        "data_dir": tmp / name / "data",
        "models_dir": tmp / name / "models",
        "refresh_enabled": False,
        **overrides,
    }
    return load_settings(**values)


@contextmanager
def dask_pair(log: Path) -> Iterator[str]:
    """``dask scheduler`` and one ``dask worker`` process on 127.0.0.1 (output to ``log``);
    yields the scheduler address and stops both."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_PROXY": "127.0.0.1,localhost"}
    dask = str(Path(sys.executable).with_name("dask"))
    with open(log, "wb") as out:
        scheduler = subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
        worker = subprocess.Popen(
            [dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
    try:
        yield address
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
