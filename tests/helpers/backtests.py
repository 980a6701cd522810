"""Deterministic forecasters and inputs for backtest, champion and gate tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.errors import ForecastError
from pipeline.evaluation.protocol import BacktestProtocol, default_protocol
from pipeline.forecasters.base import Forecaster


class LastValue(Forecaster):
    """Forecasts the last price it saw, with +-2%/+-5% bands: profits from any leaked future.

    Every fit records the index it saw in ``seen`` (clear it first).
    """

    name: ClassVar[str] = "last"
    min_points: ClassVar[int] = 3
    complexity: ClassVar[int] = 0
    seen: ClassVar[list[pd.DatetimeIndex]] = []

    def _fit(self, y: pd.Series) -> None:
        type(self).seen.append(y.index.copy())
        self.value_ = float(y.iloc[-1])

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        mean = np.full(h, self.value_)
        out: dict[str, Any] = {"mean": mean}
        for level in levels:
            width = 0.02 if level == 80 else 0.05
            out[f"lower_{level}"] = mean * (1 - width)
            out[f"upper_{level}"] = mean * (1 + width)
        return pd.DataFrame(out)

    def _save_state(self, folder: Path) -> list[str]:  # pragma: no cover - not persisted
        return []

    def _load_state(self, folder: Path) -> None:  # pragma: no cover
        pass


class Trend(LastValue):
    """Extrapolates the last step: a 'more complex' model."""

    name: ClassVar[str] = "trend"
    complexity: ClassVar[int] = 2

    def _fit(self, y: pd.Series) -> None:
        self.value_ = float(y.iloc[-1])
        self.slope_ = float(y.iloc[-1] - y.iloc[-2])

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        frame = super()._predict(h, levels)
        shift = self.slope_ * np.arange(1, h + 1)
        for col in frame:
            frame[col] = frame[col] + shift
        return frame.clip(lower=1e-6)


class Unfittable(LastValue):
    """Refuses to fit, like a model that does not converge."""

    name: ClassVar[str] = "broken"

    def _fit(self, y: pd.Series) -> None:
        raise ForecastError("broken: refuses to fit")


def rising(n: int = 120, freq: str = "1D") -> pd.Series:
    """100, 101, 102, ...: a series where any look-ahead shows in the errors."""
    index = pd.date_range("2021-01-01", periods=n, freq=freq, tz="UTC", name="ds")
    return pd.Series(100.0 + np.arange(n, dtype=float), index=index, name="y")


def small_protocol(y: pd.Series, **overrides: Any) -> BacktestProtocol:
    """A daily protocol of 4 origins 10 days apart with a 5-step horizon (overridable)."""
    parts: dict[str, Any] = {"horizon": 5, "step": "10D", "n_origins": 4}
    parts.update(overrides)
    return default_protocol("1d", y.index, **parts)


def summary_row(
    mase: float, cov: float, complexity: int = 0, failed: int = 0, winkler: float = 100.0
) -> dict[str, float]:
    """One model's backtest summary with the fields the champion rule and the gate read."""
    return {
        "mase": mase,
        "coverage_95": cov,
        "winkler_95": winkler,
        "complexity": complexity,
        "failed_folds": failed,
    }
