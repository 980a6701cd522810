"""Changing what the API serves, as the nightly cycle and the refresh job do, for the feed and
dashboard tests: a promotion of a new version, and a new issue of a served version."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from pipeline.series import SeriesId, freq_offset
from tests.helpers.serving import ORIGIN, read_forecast, write


def promote_new(
    store: ArtifactStore,
    series: SeriesId,
    model: str = "naive",
    *,
    seed: int = 7,
    end: datetime | None = ORIGIN,
) -> ArtifactMetadata:
    """Fit ``model`` again (another seed: other prices) and make the new version the champion;
    ``end`` as in :func:`tests.helpers.serving.write`."""
    return write(store, series, model, seed=seed, promote=True, end=end)


def reissue(store: ArtifactStore, meta: ArtifactMetadata) -> pd.Timestamp:
    """Write a new issue of ``meta``'s version one period later (its path shifted by one step),
    as a refresh from one newer price would; returns the new origin."""
    series = SeriesId(meta.coin, meta.vs_currency, meta.freq)
    step = freq_offset(series.freq)
    forecast = read_forecast(store, meta)
    forecast["ds"] = pd.to_datetime(forecast["ds"], utc=True) + step
    origin = pd.Timestamp(meta.training.last_ds).tz_convert("UTC") + step
    store.write_issue(
        series,
        meta.model,
        meta.version,
        forecast,
        origin=origin.to_pydatetime(),
        last_price=float(meta.last_price) * 1.01,
        n_new=1,
    )
    return origin
