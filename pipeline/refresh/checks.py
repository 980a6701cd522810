"""What a refresh refuses: new data that does not continue the served origin, and a recomputed
forecast path that is not a valid forecast.

Every refusal is a :class:`RefusedError` whose message names the series, the model and version,
and the rule (the ``label`` passed in is ``series/model/version``). The data rules of
:meth:`~pipeline.forecasters.base.Forecaster.update` itself (on the grid, no gaps, finite and
positive) are the model's; the rules here are the ones that need the served issue or the
forecast frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.forecasters.base import interval_columns


class RefusedError(PipelineError):
    """A refresh refused to write a new issue; the previous one stays served."""


def _iso(ts: datetime | pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def check_continues(
    y: pd.Series, served_origin: datetime, label: str, *, what: str = "the served issue's origin"
) -> None:
    """Refuse when the processed series ends before the origin already served: the price feed
    went backwards in time (a replaced or truncated raw file)."""
    last = y.index[-1] if len(y) else None
    if last is None or last < pd.Timestamp(served_origin):
        ends = "is empty" if last is None else f"ends at {_iso(last)}"
        raise RefusedError(
            f"{label}: refused, the price feed went backwards in time: the processed series "
            f"{ends}, before {what} {_iso(served_origin)}"
        )


def new_points(y: pd.Series, data_end: datetime, step: pd.Timedelta, label: str) -> pd.Series:
    """The points after the version's training end, refusing a gap right after it (the gaps
    further on are refused by the model's own update rules)."""
    end = pd.Timestamp(data_end)
    new = y.loc[y.index > end]
    if len(new) and new.index[0] != end + step:
        missing = int((new.index[0] - end) / step) - 1
        raise RefusedError(
            f"{label}: refused, gap in the new data: no price from {_iso(end + step)} to "
            f"{_iso(new.index[0] - step)} ({missing} missing step(s), longer than the gaps "
            "processing fills); the next training starts after it"
        )
    return new


def check_forecast(
    frame: pd.DataFrame,
    origin: pd.Timestamp,
    step: pd.Timedelta,
    horizon: int,
    levels: Sequence[int],
    label: str,
) -> None:
    """Refuse a forecast path that is not ``horizon`` rows from one step after ``origin`` with
    finite, positive values and ordered bands: ``lower_95 <= lower_80 <= mean <= upper_80 <=
    upper_95``."""
    columns = interval_columns(levels)
    if list(frame.columns) != columns or len(frame) != horizon:
        raise RefusedError(
            f"{label}: refused, the forecast has columns {list(frame.columns)} and {len(frame)} "
            f"rows; expected {columns} and {horizon} rows"
        )
    expected = pd.DatetimeIndex([origin + step * k for k in range(1, horizon + 1)])
    if not pd.DatetimeIndex(frame["ds"]).equals(expected):
        raise RefusedError(f"{label}: refused, the forecast does not start one step after the "
                           f"origin {_iso(origin)} on the {step} grid")  # fmt: skip
    values = frame[columns[1:]].to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise RefusedError(
            f"{label}: refused, non-finite or non-positive forecast: {columns[1 + col]} = "
            f"{float(values[row, col])!r} at {_iso(frame['ds'].iloc[row])}"
        )
    inner_lo, inner_hi, inner = frame["mean"], frame["mean"], "mean"
    for level in sorted(levels):
        lower, upper = frame[f"lower_{level}"], frame[f"upper_{level}"]
        wrong = (lower > inner_lo) | (upper < inner_hi)
        if wrong.any():
            row = int(np.flatnonzero(wrong.to_numpy())[0])
            raise RefusedError(
                f"{label}: refused, inverted band: the {level}% interval "
                f"[{lower.iloc[row]:.6g}, {upper.iloc[row]:.6g}] does not contain the {inner} "
                f"at {_iso(frame['ds'].iloc[row])}"
            )
        inner_lo, inner_hi, inner = lower, upper, f"{level}% interval"
