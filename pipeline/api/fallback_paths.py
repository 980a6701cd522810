"""What the fallbacks serve that no loaded version holds: a path derived from a finer
timeframe, and a naive random walk from the processed data (see :mod:`pipeline.api.fallback`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from pipeline.api.issue import Issue, artifact_issue
from pipeline.api.served import ServedModel, build_served
from pipeline.api.wire import utc_second
from pipeline.artifacts.store import LoadedArtifact, describe_version
from pipeline.errors import PipelineError
from pipeline.series import FREQUENCY_TABLE, SeriesId, freq_offset

_EPOCH = pd.Timestamp(0, tz="UTC")


def label(served: ServedModel) -> str:
    """``series/model/version`` of a served model."""
    return f"{served.series.name}/{served.model}/{served.version}"


def derive_issue(source: ServedModel, series: SeriesId) -> Issue:
    """The issue of ``series`` read off the finer ``source``: every k-th step of its path.

    A bar of ``series`` labelled ``T`` covers ``[T, T + step)`` and its price is the last fine
    price in it, so the fine step ending at ``T + step`` forecasts exactly that price. Raises a
    :class:`PipelineError` when ``series`` is not built from ``source``'s timeframe or the path
    holds no whole bar.
    """
    fine, coarse = freq_offset(source.series.freq), freq_offset(series.freq)
    built_from = FREQUENCY_TABLE[series.freq].raw
    if built_from != source.series.freq or coarse <= fine or coarse % fine != pd.Timedelta(0):
        raise PipelineError(
            f"{series.freq} is not built from {source.series.freq} bars, so the "
            f"{source.series.name} path is not a forecast of {series.name}"
        )
    issue = source.issue
    if issue is None:
        art = source.artifact
        if art is None:
            raise PipelineError(f"{label(source)}: no forecast path to derive from")
        issue = artifact_issue(art)
    frame = issue.forecast.reset_index(drop=True)
    ds = pd.to_datetime(frame["ds"], utc=True)
    ends = ds + fine
    keep = ((ends - _EPOCH) % coarse) == pd.Timedelta(0)
    derived = frame.loc[keep.to_numpy()].copy()
    if derived.empty:
        raise PipelineError(
            f"the {source.series.name} path ({len(frame)} steps) holds no whole {series.freq} bar"
        )
    derived["ds"] = (ends[keep] - coarse).to_numpy()
    origin = pd.Timestamp(issue.origin)
    origin = _EPOCH + ((origin + fine - _EPOCH) // coarse) * coarse - coarse
    return Issue(
        forecast=derived.reset_index(drop=True),
        issued_at=issue.issued_at,
        origin=utc_second(origin),
        last_price=issue.last_price,
        source=f"{issue.source} (every {coarse // fine}th step)",
    )


def naive_served(series: SeriesId, data_dir: Path, points: int, horizon: int) -> ServedModel:
    """Serve a naive random walk fitted on the last ``points`` processed prices of ``series``."""
    from pipeline.forecasters.baselines import Naive
    from pipeline.process.stage import load_training_series, processed_path

    y = load_training_series(data_dir, series).iloc[-points:]
    try:
        forecaster = Naive().fit(y)
    except (PipelineError, ValueError) as exc:
        raise PipelineError(f"cannot fit the naive random walk: {exc}") from exc
    last: datetime = y.index[-1].to_pydatetime()
    version = f"fallback-{last:%Y%m%dT%H%M%SZ}"
    meta = describe_version(
        series,
        forecaster,
        y,
        version=version,
        horizon=horizon,
        files={},
        data_source="processed data (naive random-walk fallback)",
    )
    art = LoadedArtifact(meta, forecaster.predict(horizon), processed_path(data_dir, series))
    return build_served(series, forecaster.name, version, False, art)
