"""Helpers for forecasters built from other forecasters (conformal wrapper, ensemble).

* :func:`save_member` / :func:`load_member`: an artifact folder is flat (every file is listed by
  name in ``metadata.json``), so a member's files are stored with a prefix (``base__state.json``)
  and copied back into a temporary folder to load them with the member's own ``load``.
* :func:`calibration_origins` / :func:`rolling_forecasts`: forecasts of a model from origins
  *inside* a training series, each fitted only on the data before its origin (no look-ahead).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ForecastError
from pipeline.forecasters.base import Forecaster, constructor_params
from pipeline.series import FREQUENCY_TABLE, freq_of_step

logger = logging.getLogger(__name__)

#: Calibration horizon (steps) for a series whose step is none of the known frequencies.
FALLBACK_HORIZON = 30


def default_horizon(step: pd.Timedelta) -> int:
    """The calibration horizon when the caller gives none: the frequency table's default
    horizon for the series' step (``pipeline.series``), else :data:`FALLBACK_HORIZON`.

    Forecasters never read the settings: a caller that serves another horizon (a
    ``HORIZON_<freq>`` override) passes it as the forecaster's ``horizon`` parameter.
    """
    freq = freq_of_step(step)
    return FALLBACK_HORIZON if freq is None else FREQUENCY_TABLE[freq].horizon


def save_member(member: Forecaster, folder: Path, prefix: str) -> list[str]:
    """Save ``member`` into ``folder`` with every file name prefixed by ``prefix``."""
    with tempfile.TemporaryDirectory(prefix="member-") as tmp:
        names = member.save(Path(tmp))
        for name in names:
            shutil.copyfile(Path(tmp) / name, folder / f"{prefix}{name}")
    return [f"{prefix}{name}" for name in names]


def load_member(
    cls: type[Forecaster], folder: Path, prefix: str, names: Sequence[str], params: dict[str, Any]
) -> Forecaster:
    """Load a member saved by :func:`save_member` (``names`` without the prefix)."""
    with tempfile.TemporaryDirectory(prefix="member-") as tmp:
        for name in names:
            src = folder / f"{prefix}{name}"
            if not src.is_file():
                raise ForecastError(f"{src}: member model file is missing")
            shutil.copyfile(src, Path(tmp) / name)
        return cls.load(Path(tmp), params)


def refit_params(cls: type[Forecaster], fitted: Forecaster) -> dict[str, Any]:
    """Constructor keywords that refit ``fitted`` cheaply on other data: what its own
    ``calibration_params()`` says when it has one, else the fitted values its constructor takes
    (e.g. an ARIMA order, whose coefficients are re-estimated)."""
    hook = getattr(fitted, "calibration_params", None)
    if callable(hook):
        chosen: dict[str, Any] = hook()
        return chosen
    return constructor_params(cls, fitted.fitted_params())


def calibration_origins(n: int, min_train: int, horizon: int, count: int) -> list[int]:
    """Up to ``count`` origins (training lengths) evenly spread in ``[min_train, n - horizon]``.

    An origin ``o`` means: fit on ``y[:o]``, compare with ``y[o:o + horizon]``. The last origin
    leaves exactly ``horizon`` points, so every calibration error is inside the series.
    """
    last = n - horizon
    if last < min_train:
        return []
    if count <= 1:
        return [last]
    origins = np.unique(np.round(np.linspace(min_train, last, count)).astype(int))
    return [int(o) for o in origins]


@dataclass
class RollingForecasts:
    """Forecasts from several origins: arrays of shape ``(n_origins, horizon)``, log units."""

    origins: list[pd.Timestamp]
    actual: np.ndarray
    mean: np.ndarray
    lower: dict[int, np.ndarray]
    upper: dict[int, np.ndarray]


def rolling_forecasts(
    factory: Callable[[pd.Series], Forecaster],
    y: pd.Series,
    origins: Sequence[int],
    horizon: int,
    levels: Sequence[int],
) -> RollingForecasts:
    """Fit ``factory(y[:o])`` at each origin and forecast ``horizon`` steps (log units).

    An origin whose fit raises :class:`ForecastError` gets NaN rows (logged); if every origin
    fails, :class:`ForecastError` is raised.
    """
    n_o = len(origins)
    actual = np.empty((n_o, horizon))
    mean = np.empty((n_o, horizon))
    lower = {lv: np.empty((n_o, horizon)) for lv in levels}
    upper = {lv: np.empty((n_o, horizon)) for lv in levels}
    log_y = np.log(y.to_numpy(dtype=float))
    failures = 0
    for i, o in enumerate(origins):
        try:
            fc = factory(y.iloc[:o]).predict(horizon, levels)
        except ForecastError as exc:
            # One failed refit must not sink the calibration: that origin is left out (NaN).
            logger.warning("calibration fit at origin %s failed: %s", y.index[o - 1], exc)
            failures += 1
            actual[i] = mean[i] = np.nan
            for lv in levels:
                lower[lv][i] = upper[lv][i] = np.nan
            continue
        actual[i] = log_y[o : o + horizon]
        mean[i] = np.log(fc["mean"].to_numpy())
        for lv in levels:
            lower[lv][i] = np.log(fc[f"lower_{lv}"].to_numpy())
            upper[lv][i] = np.log(fc[f"upper_{lv}"].to_numpy())
    if failures == n_o:
        raise ForecastError(f"every one of the {n_o} calibration fits failed")
    return RollingForecasts([y.index[o - 1] for o in origins], actual, mean, lower, upper)
