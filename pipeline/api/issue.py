"""One *issue* of a model version: a forecast path, when it was written and where it starts.

A version's first issue is the path written when it was trained (``forecast.csv``): issued at
the version's creation time, from the last observation it was trained on (``data_end``). Later
issues of the same version, written from newer prices without refitting, carry their own issue
time, origin and price at the origin; the registry serves whichever issue is current by passing
it to :func:`~pipeline.api.served.build_served`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

import numpy as np
import pandas as pd

from pipeline.api.wire import utc_second
from pipeline.artifacts.store import FORECAST_FILE, LoadedArtifact
from pipeline.errors import PipelineError
from pipeline.forecasters.base import DEFAULT_LEVELS

#: The columns a forecast path must have: ds, mean and both bands of every level.
PATH_COLUMNS: tuple[str, ...] = (
    "ds",
    "mean",
    *(f"{side}_{level}" for level in DEFAULT_LEVELS for side in ("lower", "upper")),
)


@dataclass(frozen=True)
class Issue:
    """A forecast path and what the answers say about it."""

    #: ``ds`` (UTC, ascending) and :data:`PATH_COLUMNS`, one row per step after the origin
    forecast: pd.DataFrame
    #: when the path was written
    issued_at: datetime
    #: the last observed timestamp the path starts from
    origin: datetime
    #: the price observed at the origin (the answers' ``last_price``)
    last_price: float
    #: where the path was read from, for error messages
    source: str


def artifact_issue(art: LoadedArtifact) -> Issue:
    """The issue a version was written with: its ``forecast.csv`` from its training data end."""
    meta = art.metadata
    return Issue(
        forecast=art.forecast,
        issued_at=utc_second(meta.created_at),
        origin=utc_second(meta.training.last_ds),
        last_price=float(meta.last_price),
        source=f"{art.path}/{FORECAST_FILE}",
    )


@dataclass(frozen=True)
class ForecastPath:
    """The checked columns of an issue's path, cut to the served horizon."""

    #: the UTC time of each step (to the second)
    stamps: list[datetime]
    #: the same as Unix seconds (what "now" is compared with)
    seconds: list[int]
    #: every column of :data:`PATH_COLUMNS` but ``ds``, as floats
    columns: dict[str, list[float]]

    @classmethod
    def of(cls, issue: Issue, horizon: int) -> ForecastPath:
        """The first ``horizon`` steps of ``issue``; a :class:`PipelineError` when unusable."""
        frame = issue.forecast
        missing = [col for col in PATH_COLUMNS if col not in frame.columns]
        if missing:
            raise PipelineError(f"{issue.source}: missing columns {missing}")
        if frame.empty:
            raise PipelineError(f"{issue.source}: the forecast path is empty")
        mean = frame["mean"].to_numpy(dtype=float)
        if not np.all(np.isfinite(mean)) or np.any(mean <= 0):
            raise PipelineError(f"{issue.source}: non-finite or non-positive mean forecast")
        rows = frame.iloc[: min(len(frame), horizon)]
        stamps = [utc_second(ts) for ts in pd.to_datetime(rows["ds"], utc=True)]
        seconds = [int(stamp.timestamp()) for stamp in stamps]
        if any(later <= earlier for earlier, later in pairwise(seconds)):
            raise PipelineError(f"{issue.source}: the forecast timestamps are not increasing")
        columns = {col: rows[col].to_numpy(dtype=float).tolist() for col in PATH_COLUMNS[1:]}
        return cls(stamps, seconds, columns)
