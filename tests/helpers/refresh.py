"""A price feed a test extends hour by hour, versions trained on it, and forecasters that break
after an update, for the refresh tests."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from pipeline.config import Settings, load_settings
from pipeline.forecasters import make_forecaster
from pipeline.forecasters.baselines import Naive
from pipeline.ingest import ingest_series
from pipeline.process.stage import load_training_series, process_series
from pipeline.series import SeriesId

HOURLY = SeriesId("bitcoin", "usd", "1h")
HOUR = pd.Timedelta(hours=1)


class HourlyFeed:
    """A CoinGecko-style hourly export (``snapped_at,price,...``) that ingestion reads with
    ``SOURCE=csv:PATH``; each :meth:`append` adds the next hour(s), like a live source would."""

    def __init__(self, path: Path, y: pd.Series) -> None:
        self.path = path
        self.rows: list[tuple[pd.Timestamp, str]] = [(ds, f"{p:.6f}") for ds, p in y.items()]
        self.rng = np.random.default_rng(7)
        self.write()

    @property
    def last_ds(self) -> pd.Timestamp:
        return self.rows[-1][0]

    @property
    def last_price(self) -> float:
        return float(next(p for _, p in reversed(self.rows) if p and p != "nan"))

    def append(self, n: int = 1, *, skip: int = 0, price: str | None = None) -> pd.Timestamp:
        """Add ``n`` hours after ``skip`` missing ones; ``price`` is written as given (e.g.
        ``""`` for a missing value), else a small random move. Returns the new last ds."""
        ds = self.last_ds + HOUR * skip
        for _ in range(n):
            ds = ds + HOUR
            move = math.exp(0.004 * self.rng.standard_normal())
            text = price if price is not None else f"{self.last_price * move:.6f}"
            self.rows.append((ds, text))
        self.write()
        return self.last_ds

    def truncate(self, n: int) -> None:
        """Drop the newest ``n`` rows: the source now answers an older window."""
        del self.rows[-n:]
        self.write()

    def write(self) -> None:
        lines = ["snapped_at,price,market_cap,total_volume"]
        lines += [f"{ds:%Y-%m-%d %H:%M:%S} UTC,{p},0.0,0.0" for ds, p in self.rows]
        self.path.write_text("\n".join(lines) + "\n")


def hourly_feed(folder: Path) -> HourlyFeed:
    """300 hourly prices ending 2026-11-21 11:00 UTC, as ``folder/export.csv``."""
    from tests.helpers.prices import random_walk_prices

    y = random_walk_prices(300, "1h", seed=3, start="2026-11-09 00:00")
    return HourlyFeed(folder / "export.csv", y)


def feed_settings(feed: HourlyFeed, **overrides: object) -> Settings:
    """Settings of one hourly bitcoin series ingested from ``feed``."""
    return load_settings(
        source=f"csv:{feed.path}", coins=["bitcoin"], frequencies=["1h"], **overrides
    )


def train_on_feed(
    settings: Settings,
    models: Sequence[str] = ("naive", "drift"),
    champion: str = "naive",
    series: SeriesId = HOURLY,
) -> dict[str, ArtifactMetadata]:
    """Ingest and process the feed, fit ``models`` on the processed series (as training would)
    and write them as versions; ``champion`` is promoted."""
    ingest_series(series.raw, settings)
    process_series(series, settings)
    y = load_training_series(settings.data_dir, series)
    store = ArtifactStore(settings.models_dir)
    metas = {}
    for model in models:
        fitted = make_forecaster(model).fit(y)
        metas[model] = store.write_version(series, fitted, y, horizon=settings.horizon(series.freq))
    store.promote(series, champion, metas[champion].version, "test")
    return metas


class NanAfterUpdate(Naive):
    """A naive forecaster whose update leaves it predicting NaN bands."""

    name: ClassVar[str] = "nan_after_update"

    def _update(self, y_new: pd.Series) -> None:
        self.sigma_ = float("nan")


class Frozen(Naive):
    """A naive forecaster that, like a model without cheap updates, cannot update."""

    name: ClassVar[str] = "frozen"
    updatable: ClassVar[bool] = False
