"""The one forecaster interface, and helpers shared by the model families.

Every forecaster:

* is configured by keyword parameters in ``__init__`` and reports them with :meth:`get_params`;
* ``fit(y)`` takes a price series indexed by a regular UTC ``DatetimeIndex`` and returns ``self``;
  fitted state lives in attributes ending in ``_``;
* ``predict(h, levels=DEFAULT_LEVELS)`` (80 and 95) returns ``ds, mean, lower_L, upper_L`` for
  each level, in *price* units, for steps 1..h after the last observation;
* ``update(y_new)`` (models with ``updatable = True``) moves the origin to the last of the
  observations that arrived after the fit, keeping the estimated parameters: afterwards
  ``predict(h)`` forecasts from the new origin, as a fit on the longer series with the same
  parameters would;
* ``save(folder)`` writes its model file(s) and returns their names; ``load(folder, params)``
  restores a fitted forecaster that predicts exactly as before (an updated one too).

Models work on log prices; the interface speaks prices.
"""

from __future__ import annotations

import copy
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from pipeline.errors import ForecastError

DEFAULT_LEVELS: tuple[int, ...] = (80, 95)


def interval_columns(levels: Sequence[int] = DEFAULT_LEVELS) -> list[str]:
    """Column names of a forecast frame for ``levels``."""
    cols = ["ds", "mean"]
    for level in sorted(levels):
        cols += [f"lower_{level}", f"upper_{level}"]
    return cols


class Forecaster(ABC):
    """Base class: subclasses set ``name`` and implement ``_fit``, ``_predict_log``, save/load."""

    name: ClassVar[str]
    #: Shortest series (points) the model accepts.
    min_points: ClassVar[int] = 10
    #: Libraries whose exact version a saved model depends on (checked when loading).
    libraries: ClassVar[tuple[str, ...]] = ()
    #: Ordering used to break ties toward the simpler model (lower = simpler).
    complexity: ClassVar[int] = 0
    #: Whether :meth:`update` can move the origin without refitting (the class implements
    #: ``_update``).
    updatable: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)

    # -- public API -------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Configuration plus what fitting chose (e.g. an ARIMA order), JSON-serialisable."""
        return {**self.params, **self.fitted_params()}

    def fitted_params(self) -> dict[str, Any]:
        """What fitting chose; override when there is something to report."""
        return {}

    def fit(self, y: pd.Series) -> Self:
        y = check_series(y, self.min_points, self.name)
        self.last_ds_ = y.index[-1]
        self.step_ = infer_step(y.index)
        self.last_price_ = float(y.iloc[-1])
        self._fit(y)
        return self

    def update(self, y_new: pd.Series) -> Self:
        """Move the origin to the last of ``y_new``, keeping the estimated parameters.

        ``y_new`` holds the prices that arrived after the fit (or the last update): on the
        model's grid, starting one step after the origin, without gaps, finite and positive.
        An empty series changes nothing. Raises :class:`ForecastError` naming the model and the
        rule broken, or when the model cannot update without refitting (``updatable`` False);
        the model is then unchanged (``_update`` works on a shallow copy whose attributes are
        swapped in only when it succeeds, so it must replace, not mutate, what it changes).
        """
        if not hasattr(self, "last_ds_"):
            raise ForecastError(f"{self.name}: call fit() before update()")
        if not self.updatable:
            raise ForecastError(f"{self.name}: cannot update without refitting")
        y_new = check_update(y_new, self.last_ds_, self.step_, self.name)
        if y_new.empty:
            return self
        work = copy.copy(self)
        work._update(y_new)
        work.last_ds_ = y_new.index[-1]
        work.last_price_ = float(y_new.iloc[-1])
        self.__dict__.update(work.__dict__)
        return self

    def predict(self, h: int, levels: Sequence[int] = DEFAULT_LEVELS) -> pd.DataFrame:
        if not hasattr(self, "last_ds_"):
            raise ForecastError(f"{self.name}: call fit() before predict()")
        if isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1:
            raise ForecastError(f"{self.name}: horizon must be an integer >= 1, got {h!r}")
        h = int(h)
        for level in levels:
            if not 0 < level < 100:
                raise ForecastError(f"{self.name}: interval level must be in (0, 100), got {level}")
        frame = self._predict(h, sorted(levels))
        frame.insert(0, "ds", self.future_index(h))
        return enforce_monotone(frame[interval_columns(levels)], levels)

    def future_index(self, h: int) -> pd.DatetimeIndex:
        return pd.DatetimeIndex([self.last_ds_ + self.step_ * k for k in range(1, h + 1)])

    # -- to implement -------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, y: pd.Series) -> None:
        """Fit on a validated price series."""

    def _update(self, y_new: pd.Series) -> None:
        """Absorb validated new prices (the origin fields are set afterwards by :meth:`update`).

        ``self.last_ds_`` and ``self.last_price_`` still describe the old origin here.
        """
        raise ForecastError(f"{self.name}: cannot update without refitting")

    @abstractmethod
    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        """Return ``mean, lower_L, upper_L`` columns (price units), ``h`` rows, no ``ds``."""

    @abstractmethod
    def _save_state(self, folder: Path) -> list[str]:
        """Write the fitted model's own file(s) into ``folder``; return their names."""

    @abstractmethod
    def _load_state(self, folder: Path) -> None:
        """Restore fitted state written by :meth:`_save_state`."""

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: Path) -> list[str]:
        """Write model files plus ``state.json`` (common fitted state) into ``folder``."""
        common = {
            "last_ds": self.last_ds_.isoformat(),
            "step_seconds": self.step_.total_seconds(),
            "last_price": self.last_price_,
        }
        (folder / "state.json").write_text(json.dumps(common, indent=2) + "\n", encoding="utf-8")
        return ["state.json", *self._save_state(folder)]

    @classmethod
    def load(cls, folder: Path, params: dict[str, Any]) -> Self:
        """Restore a saved forecaster; ``params`` may be :meth:`get_params` output (fitted
        values included): only the keywords the constructor accepts are passed on."""
        obj = cls(**constructor_params(cls, params))
        common = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        obj.last_ds_ = pd.Timestamp(common["last_ds"])
        obj.step_ = pd.Timedelta(seconds=common["step_seconds"])
        obj.last_price_ = float(common["last_price"])
        obj._load_state(folder)
        return obj

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def constructor_params(cls: type[Forecaster], params: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``params`` that ``cls.__init__`` accepts (all of them if it takes ``**``)."""
    sig = inspect.signature(cls.__init__)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return dict(params)
    return {k: v for k, v in params.items() if k in sig.parameters and k != "self"}


def takes_param(cls: type[Forecaster], name: str) -> bool:
    """Whether ``cls.__init__`` names the keyword ``name`` (a ``**params`` catch-all does not
    count)."""
    param = inspect.signature(cls.__init__).parameters.get(name)
    return param is not None and param.kind in (
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )


def check_series(y: pd.Series, min_points: int, name: str) -> pd.Series:
    """Validate a price series: UTC DatetimeIndex, increasing, finite and positive, long enough."""
    if not isinstance(y, pd.Series) or not isinstance(y.index, pd.DatetimeIndex):
        raise ForecastError(f"{name}: y must be a pandas Series indexed by timestamps")
    y = y.astype(float)
    if len(y) < min_points:
        raise ForecastError(
            f"{name}: series too short ({len(y)} points); needs at least {min_points}"
        )
    if not y.index.is_monotonic_increasing or y.index.has_duplicates:
        raise ForecastError(f"{name}: timestamps must be strictly increasing")
    values = y.to_numpy()
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ForecastError(f"{name}: prices must be finite and positive")
    if y.index.tz is None:
        y = y.tz_localize("UTC")
    return y


def check_update(
    y_new: pd.Series, origin: pd.Timestamp, step: pd.Timedelta, name: str
) -> pd.Series:
    """Validate prices that arrived after ``origin``: a UTC series on the ``step`` grid that
    starts one step after ``origin``, with no gaps, finite and positive. Returns it as floats
    in the origin's time zone (an empty series passes)."""
    if not isinstance(y_new, pd.Series) or not isinstance(y_new.index, pd.DatetimeIndex):
        raise ForecastError(f"{name}: update data must be a pandas Series indexed by timestamps")
    y_new = y_new.astype(float)
    if y_new.empty:
        return y_new
    index = y_new.index
    index = index.tz_localize("UTC") if index.tz is None else index
    if origin.tz is not None:
        index = index.tz_convert(origin.tz)
    y_new = pd.Series(y_new.to_numpy(), index=index, name=y_new.name)
    expected = origin + step
    if index[0] != expected:
        where = " (at or before the origin)" if index[0] <= origin else ""
        raise ForecastError(
            f"{name}: update data must start at {expected.isoformat()} (one step after the "
            f"origin), got {index[0].isoformat()}{where}"
        )
    diffs = index[1:] - index[:-1]
    backwards = np.flatnonzero(diffs <= pd.Timedelta(0))
    if backwards.size:
        i = int(backwards[0])
        raise ForecastError(
            f"{name}: update data goes backwards in time at {index[i + 1].isoformat()} "
            f"(after {index[i].isoformat()})"
        )
    bad = np.flatnonzero(diffs != step)
    if bad.size:
        i = int(bad[0])
        prev, ts, diff = index[i], index[i + 1], diffs[i]
        if diff % step == pd.Timedelta(0):
            raise ForecastError(
                f"{name}: update data has a gap at {prev.isoformat()} -> {ts.isoformat()} "
                f"({diff // step - 1} missing step(s))"
            )
        raise ForecastError(
            f"{name}: update data is off the model's {step} grid at {ts.isoformat()}"
        )
    values = y_new.to_numpy()
    invalid = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if invalid.size:
        i = int(invalid[0])
        raise ForecastError(
            f"{name}: update data has a non-finite or non-positive price at "
            f"{index[i].isoformat()} ({float(values[i])!r})"
        )
    return y_new


def infer_step(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The series step: the index's freq, else the most common spacing."""
    if index.freq is not None:
        return pd.Timedelta(index.freq)
    diffs = index.to_series().diff().dropna()
    if diffs.empty:
        raise ForecastError("cannot infer the step of a one-point series")
    return pd.Timedelta(diffs.mode().iloc[0])


def lognormal_frame(
    mean_log: np.ndarray, sd_log: np.ndarray, levels: Sequence[int]
) -> pd.DataFrame:
    """Price-unit forecast frame from a normal forecast of log price (median as the point)."""
    out: dict[str, np.ndarray] = {"mean": np.exp(mean_log)}
    for level in levels:
        z = NormalDist().inv_cdf(0.5 + level / 200.0)
        out[f"lower_{level}"] = np.exp(mean_log - z * sd_log)
        out[f"upper_{level}"] = np.exp(mean_log + z * sd_log)
    return pd.DataFrame(out)


def enforce_monotone(frame: pd.DataFrame, levels: Sequence[int]) -> pd.DataFrame:
    """Guarantee lower_95 <= lower_80 <= mean <= upper_80 <= upper_95 (clip numeric noise)."""
    frame = frame.copy()
    inner_lo = frame["mean"]
    inner_hi = frame["mean"]
    for level in sorted(levels):
        frame[f"lower_{level}"] = np.minimum(frame[f"lower_{level}"], inner_lo)
        frame[f"upper_{level}"] = np.maximum(frame[f"upper_{level}"], inner_hi)
        inner_lo, inner_hi = frame[f"lower_{level}"], frame[f"upper_{level}"]
    return frame.reset_index(drop=True)
