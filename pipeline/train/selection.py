"""The selection backtest: a short rolling-origin backtest of every model on recent data.

One holdout says little about intervals (its 95% coverage is 0% or 100% per step), so before
training writes any version it backtests every model on the end of the series:
``BACKTEST_ORIGINS`` origins, each fit on a sliding window of ``BACKTEST_WINDOW`` points. The
per-model summary is stored in each version's metadata (``extra.backtest``) and is what
:func:`pipeline.evaluation.champion.training_champion` and the nightly gate judge, together with
the per-origin scores (:class:`~pipeline.evaluation.evidence.Evidence`) their significance tests
need.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.forecasters import horizon_params
from pipeline.series import SeriesId

if TYPE_CHECKING:
    from pipeline.evaluation.evidence import Evidence

logger = logging.getLogger(__name__)


def model_params(
    model: str, order: tuple[int, int, int] | None, horizon: int | None = None
) -> dict[str, Any]:
    """Constructor parameters for ``model`` from the CLI options and the served ``horizon``.

    ``order`` goes to ARIMA only; ``horizon`` to the models that calibrate over a horizon (the
    conformal models and the ensemble), so they calibrate the horizon that will be served.
    """
    params: dict[str, Any] = {} if horizon is None else horizon_params(model, horizon)
    if model == "arima" and order is not None:
        params["order"] = order
    return params


@dataclass
class Selection:
    """A selection backtest: per-model summary, protocol and per-origin scores (all empty or
    ``None`` when the series was too short for one origin)."""

    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    evidence: Evidence | None = None


def selection_backtest(
    series: SeriesId,
    y: pd.Series,
    models: Sequence[str],
    settings: Settings,
    *,
    order: tuple[int, int, int] | None = None,
    n_jobs: int = 1,
) -> Selection:
    """A short rolling-origin backtest of ``models`` on the end of ``y``."""
    from pipeline.evaluation.backtest import run_backtest
    from pipeline.evaluation.evidence import Evidence
    from pipeline.evaluation.protocol import default_protocol

    window = min(settings.backtest_window, max(10, len(y) // 2))
    horizon = settings.horizon(series.freq)
    try:
        protocol = default_protocol(
            series.freq, y.index, n_origins=settings.backtest_origins, train_window=window
        )
        # Every origin gets a full window of history (calibrated models need it), so a short
        # series has fewer origins rather than folds that fail for lack of data.
        if len(y) > window and protocol.start < y.index[window]:
            protocol = dataclasses.replace(protocol, start=y.index[window])
        result = run_backtest(
            y,
            list(models),
            protocol,
            series=series.name,
            model_params={m: model_params(m, order, horizon) for m in models},
            n_jobs=n_jobs,
            progress=False,
        )
    except UsageError as exc:
        logger.warning(
            "%s: no selection backtest (%s); the champion is chosen on the holdout", series, exc
        )
        return Selection()
    summary = result.summary()
    logger.info(
        "%s: selection backtest of %d models x %d origins in %.1f s",
        series.name, len(models), len(result.origins), result.elapsed_seconds,
        extra={"series": series.name},
    )  # fmt: skip
    protocol_record = {**result.protocol.to_dict(), "origins": len(result.origins)}
    return Selection(summary, protocol_record, Evidence.from_backtest(result))
