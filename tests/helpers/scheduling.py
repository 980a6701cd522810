"""Fakes for the scheduler tests: a trainer writing real artifacts, the real gate fed with given
metrics, stages that record their calls, an HTTP server that records what it is sent, and a
parser of the metrics text."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings
from pipeline.evaluation import champion
from pipeline.forecasters import make_forecaster
from pipeline.scheduling.cycle import Stages
from pipeline.series import SeriesId
from pipeline.train.stage import TrainResult
from tests.helpers.prices import random_walk_prices

BTC = SeriesId("bitcoin", "usd", "1d")
ETH = SeriesId("ethereum", "usd", "1d")


def good_metrics(
    mase: float = 1.0, coverage: float = 0.95, winkler: float = 100.0, failed: int = 0
) -> dict[str, float]:
    """Backtest metrics of a model that passes every gate rule unless told otherwise."""
    return {
        "mase": mase,
        "coverage_95": coverage,
        "coverage_80": 0.8,
        "winkler_95": winkler,
        "mae": 10.0,
        "failed_folds": failed,
    }


class FakeTrainer:
    """Writes real artifacts (naive and drift) and reports the metrics it is told to."""

    def __init__(self, metrics: dict[str, dict[str, float]], champion: str = "naive") -> None:
        self.metrics = metrics
        self.champion = champion
        self.calls: list[SeriesId] = []

    def __call__(self, series: SeriesId, settings: Settings, models: Sequence[str]) -> Any:
        self.calls.append(series)
        store = ArtifactStore(Path(settings.models_dir))
        y = random_walk_prices(120, seed=len(self.calls))
        result = TrainResult(series=series)
        for name in ("naive", "drift"):
            fitted = make_forecaster(name).fit(y)
            result.versions[name] = store.write_version(
                series, fitted, y, horizon=5, metrics=dict(self.metrics.get(name, {}))
            )
        result.metrics = self.metrics
        result.backtest = self.metrics
        result.champion = self.champion
        return result


def metrics_gate(
    series: SeriesId, settings: Settings, result: Any, serving: str | None
) -> champion.GateDecision:
    """The real selection and gate rules, fed with the trainer's metrics instead of a backtest."""
    return champion.decide(series, result.metrics, settings, serving)


@dataclass
class Calls:
    """The series each fake stage was called with, in order."""

    ingest: list[SeriesId] = field(default_factory=list)
    process: list[SeriesId] = field(default_factory=list)


def fake_stages(train: Any, ingest: Any = None, calls: Calls | None = None) -> Stages:
    """Stages whose ingest and process do nothing but record their calls in ``calls``."""
    calls = calls if calls is not None else Calls()

    def record_ingest(series: SeriesId, settings: Settings) -> Any:
        calls.ingest.append(series)
        return ingest(series, settings) if ingest is not None else None

    def record_process(series: SeriesId, settings: Settings) -> None:
        calls.process.append(series)

    return Stages(ingest=record_ingest, process=record_process, train=train, gate=metrics_gate)


#: (sample name, sorted (label, value) pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metric_samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, parsed by prometheus_client."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def champion_bytes(settings: Settings, series: SeriesId = BTC) -> bytes:
    return (Path(settings.models_dir) / series.name / "champion.json").read_bytes()


class Recorder(BaseHTTPRequestHandler):
    """Answers every POST with ``status`` and keeps (path, headers, body) in ``received``."""

    received: list[tuple[str, dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append((self.path, dict(self.headers), body))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


@contextmanager
def recording_server() -> Iterator[tuple[str, type[Recorder]]]:
    """A :class:`Recorder` on a free 127.0.0.1 port: (base URL, its handler class)."""
    handler: type[Recorder] = type("R", (Recorder,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
