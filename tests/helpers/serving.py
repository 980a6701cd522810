"""Small real artifacts for the API and serving tests (real naive/drift baselines, real store)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from pipeline.artifacts.store import FORECAST_FILE, ArtifactMetadata, ArtifactStore
from pipeline.config import Settings
from pipeline.forecasters import make_forecaster
from pipeline.process.stage import DS_FORMAT, process_series, raw_source_path
from pipeline.series import FREQUENCIES, SeriesId, freq_offset
from tests.helpers.prices import random_walk_prices

with warnings.catch_warnings():
    # starlette suggests httpx2; httpx (pinned in requirements-dev) still works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient  # noqa: F401 - re-exported for the tests

BTC_1D = SeriesId("bitcoin", "usd", "1d")
BTC_1H = SeriesId("bitcoin", "usd", "1h")
HORIZONS = {"1d": 30, "1h": 48}
#: Where the test series end (their last observation): the origin of every forecast path.
ORIGIN = datetime(2026, 11, 21, tzinfo=UTC)
#: The metadata of the versions build_models wrote, by "series/model".
Metas = dict[str, ArtifactMetadata]


@dataclass
class FrozenClock:
    """A clock for the API's runtime (``runtime.clock``) that says ``now`` until moved."""

    now: datetime = ORIGIN

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


def prices(
    series: SeriesId, n: int = 200, seed: int = 0, end: datetime | None = ORIGIN
) -> pd.Series:
    """A seeded random walk of ``series.freq`` whose last point is ``end``.

    ``end=None``: the current period of the real clock (for tests of real processes).
    """
    step = freq_offset(series.freq)
    last = pd.Timestamp.now(tz="UTC").floor(step) if end is None else pd.Timestamp(end)
    start = last - (n - 1) * step
    return random_walk_prices(n, FREQUENCIES[series.freq], seed=seed, start=start.isoformat())


def write(
    store: ArtifactStore,
    series: SeriesId,
    model: str,
    *,
    seed: int = 0,
    promote: bool = False,
    end: datetime | None = ORIGIN,
) -> ArtifactMetadata:
    """Fit ``model`` on a seeded random walk ending at ``end`` and write it as a new version."""
    y = prices(series, seed=seed, end=end)
    forecaster = make_forecaster(model).fit(y)
    meta = store.write_version(
        series, forecaster, y, horizon=HORIZONS[series.freq], metrics={"mase": 1.0 + seed / 100}
    )
    if promote:
        store.promote(series, model, meta.version, "test")
    return meta


def build_models(root: Path, end: datetime | None = ORIGIN) -> dict[str, ArtifactMetadata]:
    """bitcoin 1d and 1h, naive and drift each; drift is the champion of both.

    Every series ends at ``end`` (default :data:`ORIGIN`; ``None``: the current period).
    """
    store = ArtifactStore(root)
    out = {}
    for series in (BTC_1D, BTC_1H):
        out[f"{series.name}/naive"] = write(store, series, "naive", end=end)
        out[f"{series.name}/drift"] = write(store, series, "drift", promote=True, end=end)
    return out


def tamper(store: ArtifactStore, meta: ArtifactMetadata) -> None:
    """Change one byte of a version's forecast file (its checksum no longer matches)."""
    path = store.version_dir(meta.series_id, meta.model, meta.version) / FORECAST_FILE
    text = path.read_text("utf-8")
    path.write_text(text.replace("1", "2", 1), "utf-8")


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples called ``name`` in a Prometheus text exposition: ``(labels, value)``."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def read_forecast(store: ArtifactStore, meta: ArtifactMetadata) -> pd.DataFrame:
    return pd.read_csv(store.version_dir(meta.series_id, meta.model, meta.version) / FORECAST_FILE)


def processed_file(
    data_dir: Path, series: SeriesId, n: int = 20, *, end: str = "now", y: pd.Series | None = None
) -> Path:
    """Processed data for ``series`` made by the real process stage from a written raw file.

    ``n`` points of ``series.freq`` ending at ``end`` (the current step by default), prices
    100, 101, ...; or the prices ``y`` (e.g. those of :func:`prices`) when given. Returns the
    processed CSV (beside it, the meta file with its checksum).
    """
    step = freq_offset(series.freq)
    last = pd.Timestamp.now(tz="UTC").floor(step) if end == "now" else pd.Timestamp(end, tz="UTC")
    ds = pd.date_range(end=last, periods=n, freq=step)
    price = 100.0 + np.arange(n)
    if y is not None:
        ds, price = pd.DatetimeIndex(y.index), y.to_numpy(dtype=float)
    raw = raw_source_path(data_dir, series)
    raw.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"ds": ds.strftime(DS_FORMAT), "price": price, "market_cap": price * 1e6, "volume": 1e5}
    ).to_csv(raw, index=False)
    settings = Settings(data_dir=data_dir)
    return process_series(series, settings).path
