"""The backtest protocol: where the origins are, how far ahead each forecast goes, what it sees.

At each *origin* ``t`` a fresh forecaster is fitted on the points strictly before ``t`` (the last
``train_window`` of them, or all of them) and forecasts ``horizon`` steps starting at ``t``.
:func:`default_protocol` gives each frequency's defaults (:data:`FREQ_DEFAULTS`) with any part
overridden; :func:`make_origins` turns a protocol into positions in a series.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.cli import parse_timestamp
from pipeline.errors import UsageError
from pipeline.forecasters.base import DEFAULT_LEVELS
from pipeline.series import FREQUENCY_TABLE, freq_offset


@dataclass(frozen=True)
class FreqDefaults:
    """A frequency's default protocol: horizon steps, spacing of origins, number of origins."""

    horizon: int
    step: str
    origins: int


#: Per-frequency defaults. Daily and 4-hourly backtests score the horizon that is served
#: (:data:`pipeline.series.FREQUENCY_TABLE`); the hourly backtest scores the first day of the
#: served 48 hours, so that its weekly origins stay cheap enough for every run.
FREQ_DEFAULTS: dict[str, FreqDefaults] = {
    # monthly origins over the last two years, the served 30-day horizon
    "1d": FreqDefaults(FREQUENCY_TABLE["1d"].horizon, "30D", 24),
    # weekly origins over the last half year, the served 7-day (42-step) horizon
    "4h": FreqDefaults(FREQUENCY_TABLE["4h"].horizon, "7D", 26),
    # weekly origins over the last quarter, a 24-hour horizon
    "1h": FreqDefaults(24, "7D", 12),
}


def format_step(step: pd.Timedelta) -> str:
    """``30D``, ``7D``, ``168h`` or ``90min``: a compact, re-parseable spacing."""
    seconds = int(step.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400}D"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}min"


def parse_step(text: str | pd.Timedelta) -> pd.Timedelta:
    """The spacing of origins (``--step``): a positive duration such as ``30D`` or ``168h``."""
    try:
        step = pd.Timedelta(text)
    except (ValueError, TypeError):
        raise UsageError(f"invalid --step {text!r}: use a duration like 30D, 7D or 168h") from None
    if step <= pd.Timedelta(0):
        raise UsageError(f"--step must be positive, got {text!r}")
    return step


@dataclass(frozen=True)
class BacktestProtocol:
    """Where the origins are, how far ahead to forecast and how much history each fit sees."""

    freq: str
    horizon: int
    step: pd.Timedelta
    start: pd.Timestamp
    end: pd.Timestamp
    train_window: int | None = None
    refit_every: int = 1
    levels: tuple[int, ...] = DEFAULT_LEVELS

    def __post_init__(self) -> None:
        freq_offset(self.freq)
        if self.horizon < 1:
            raise UsageError(f"--horizon must be >= 1, got {self.horizon}")
        if self.refit_every < 1:
            raise UsageError(f"--refit-every must be >= 1, got {self.refit_every}")
        if self.train_window is not None and self.train_window < 2:
            raise UsageError(f"--train-window must be >= 2 points, got {self.train_window}")
        if self.end < self.start:
            raise UsageError(f"--end {self.end} is before --start {self.start}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "freq": self.freq,
            "horizon": self.horizon,
            "step": format_step(self.step),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "train_window": self.train_window,
            "refit_every": self.refit_every,
            "levels": list(self.levels),
            "window": "sliding" if self.train_window else "expanding",
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BacktestProtocol:
        return cls(
            freq=str(data["freq"]),
            horizon=int(data["horizon"]),
            step=parse_step(str(data["step"])),
            start=parse_timestamp(str(data["start"]), "start"),
            end=parse_timestamp(str(data["end"]), "end"),
            train_window=None if data.get("train_window") is None else int(data["train_window"]),
            refit_every=int(data.get("refit_every", 1)),
            levels=tuple(int(v) for v in data.get("levels", DEFAULT_LEVELS)),
        )


def default_protocol(
    freq: str,
    index: pd.DatetimeIndex,
    *,
    horizon: int | None = None,
    step: str | pd.Timedelta | None = None,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    n_origins: int | None = None,
    train_window: int | None = None,
    refit_every: int = 1,
) -> BacktestProtocol:
    """The protocol for ``freq`` with any of its parts overridden.

    By default the last origin is the latest one whose whole horizon has actuals, and the first
    lies ``n_origins - 1`` steps before it (daily: 24 monthly origins, i.e. the last two years).
    """
    if freq not in FREQ_DEFAULTS:
        raise UsageError(f"no backtest defaults for frequency {freq!r}")
    if len(index) == 0:
        raise UsageError("the series is empty: nothing to evaluate")
    defaults = FREQ_DEFAULTS[freq]
    h = defaults.horizon if horizon is None else horizon
    if h < 1:
        raise UsageError(f"--horizon must be >= 1, got {h}")
    spacing = parse_step(step or defaults.step)
    last_end = index[-1] - (h - 1) * freq_offset(freq)
    stop = parse_timestamp(end, "--end") if end is not None else last_end
    if start is not None:
        first = parse_timestamp(start, "--start")
    else:
        count = defaults.origins if n_origins is None else n_origins
        if count < 1:
            raise UsageError(f"--origins must be >= 1, got {count}")
        first = stop - (count - 1) * spacing
    return BacktestProtocol(freq, h, spacing, first, stop, train_window, refit_every)


def make_origins(
    index: pd.DatetimeIndex, protocol: BacktestProtocol, min_train: int = 2
) -> list[int]:
    """Positions in ``index`` of the origins: the first point at or after each scheduled time.

    Origins without a full horizon of actuals, or with fewer than ``min_train`` points before
    them, are dropped.
    """
    positions: list[int] = []
    when = protocol.start
    while when <= protocol.end:
        pos = int(index.searchsorted(when, side="left"))
        if pos >= min_train and pos + protocol.horizon <= len(index) and pos not in positions:
            positions.append(pos)
        when = when + protocol.step
    return positions


__all__ = [
    "FREQ_DEFAULTS",
    "BacktestProtocol",
    "FreqDefaults",
    "default_protocol",
    "format_step",
    "make_origins",
    "parse_step",
]
