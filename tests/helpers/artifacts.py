"""Writing real model versions into a test's artifact store."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from pipeline.forecasters import make_forecaster
from pipeline.series import FREQUENCY_TABLE, SeriesId
from tests.helpers.prices import random_walk_prices


def write_version(
    store: ArtifactStore,
    series: SeriesId,
    model: str = "naive",
    y: pd.Series | None = None,
    *,
    horizon: int | None = None,
    promote: bool = False,
    **kwargs: Any,
) -> ArtifactMetadata:
    """Fit ``model`` on ``y`` and write it as a new version of ``series``.

    ``y`` defaults to a 200-point seeded random walk at the series' frequency and ``horizon`` to
    the frequency's default; ``kwargs`` go to :meth:`ArtifactStore.write_version` (``metrics``,
    ``data_file``, ...). ``promote=True`` also makes the version the champion.
    """
    spec = FREQUENCY_TABLE[series.freq]
    if y is None:
        y = random_walk_prices(200, spec.offset)
    forecaster = make_forecaster(model).fit(y)
    meta = store.write_version(
        series, forecaster, y, horizon=spec.horizon if horizon is None else horizon, **kwargs
    )
    if promote:
        store.promote(series, model, meta.version, "test")
    return meta
