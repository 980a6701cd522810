"""One served model version: its forecast path pre-serialised from the response models.

:func:`build_served` turns a loaded artifact (checksums verified by
:meth:`ArtifactStore.load`) into a :class:`ServedModel`. Everything an answer can contain is
serialised there, once per loaded version, by the pydantic models of
:mod:`pipeline.api.schemas` (see :mod:`pipeline.api.wire`); a request only slices the forecast
points and joins bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import combinations
from typing import Any

import numpy as np

from pipeline.api.errors import StepsError
from pipeline.api.schemas import (
    CompatMetadata,
    CompatPredictResponse,
    ModelSummary,
    PredictResponse,
)
from pipeline.api.wire import JsonTemplate, items_json, json_list, now_json, utc_second
from pipeline.artifacts.store import LoadedArtifact
from pipeline.errors import PipelineError
from pipeline.forecasters.base import DEFAULT_LEVELS
from pipeline.series import SeriesId

LEVELS: tuple[int, ...] = DEFAULT_LEVELS
Z95 = 1.959964


def confidence_score(mean: float, lower_95: float, upper_95: float, last_price: float) -> float:
    """Probability of the predicted direction of move at step 1 (see the schemas for the rule).

    Log price at step 1 ~ Normal(log(mean), sd) with sd = (log upper_95 - log lower_95) / (2 z95).
    ``p_up = P(price > last_price)``; the score is ``p_up`` if ``mean >= last_price`` else
    ``1 - p_up``. A degenerate interval (sd = 0) gives 1.0, or 0.5 when mean equals last_price.
    """
    if min(mean, lower_95, upper_95, last_price) <= 0:
        return 0.5
    sd = (math.log(upper_95) - math.log(lower_95)) / (2 * Z95)
    diff = math.log(mean) - math.log(last_price)
    if sd <= 0 or not math.isfinite(sd):
        return 0.5 if diff == 0 else 1.0
    p_up = 0.5 * math.erfc(-diff / (sd * math.sqrt(2.0)))  # Phi(diff / sd)
    score = p_up if mean >= last_price else 1.0 - p_up
    return min(1.0, max(0.0, score))


def levels_key(levels: Sequence[int]) -> str:
    """The key of a set of interval levels: ``"80,95"``, ``"80"``, ``"95"``."""
    return ",".join(str(level) for level in sorted(set(levels)))


#: Every non-empty set of levels a request can ask for.
LEVEL_SETS: tuple[tuple[int, ...], ...] = tuple(
    subset for size in range(len(LEVELS), 0, -1) for subset in combinations(LEVELS, size)
)


@dataclass
class ServedModel:
    """One loaded version with its answers pre-serialised."""

    series: SeriesId
    model: str
    version: str
    is_champion: bool
    horizon: int
    trained_at: datetime
    #: the /model/info answer (and this model's item of /api/v1/models)
    summary: ModelSummary = field(repr=False)
    #: v1: open fields prediction_timestamp, forecasts
    predict_template: JsonTemplate = field(repr=False)
    #: v1: per level-set key ("80,95", "80", "95"), the JSON of each forecast point
    points: dict[str, list[bytes]] = field(repr=False)
    #: compat, per level: open fields predictions, timestamp, confidence_intervals
    compat_templates: dict[int, JsonTemplate] = field(repr=False)
    #: compat: the point forecasts as JSON numbers
    means: list[bytes] = field(repr=False)
    #: compat, per level: the JSON of each interval
    intervals: dict[int, list[bytes]] = field(repr=False)
    summary_json: bytes = field(repr=False)
    _artifact: LoadedArtifact | None = field(repr=False, default=None)

    @property
    def key(self) -> str:
        return f"{self.series.name}/{self.model}"

    @property
    def age_seconds(self) -> float:
        return (datetime.now(UTC) - self.trained_at).total_seconds()

    def with_champion(self, is_champion: bool) -> ServedModel:
        """A copy flagged (or not) as its series' champion."""
        if is_champion == self.is_champion:
            return self
        return build_served(self.series, self.model, self.version, is_champion, self._artifact)

    # -- answers ------------------------------------------------------------------------------
    def check_steps(self, steps: int) -> None:
        if steps > self.horizon:
            raise StepsError(
                f"steps={steps} is beyond the horizon of {self.key} ({self.version}): "
                f"the maximum is {self.horizon}",
                self.horizon,
            )

    def predict_json(self, steps: int, levels: Sequence[int] = LEVELS) -> bytes:
        """The v1 predict response body for ``steps`` steps (raises StepsError)."""
        self.check_steps(steps)
        points = self.points[levels_key(levels)]
        return self.predict_template.fill(now_json(), json_list(points[:steps]))

    def compat_json(self, steps: int, level: int) -> bytes:
        """The compatibility ``/predict`` body (predictions, intervals at ``level``)."""
        self.check_steps(steps)
        return self.compat_templates[level].fill(
            json_list(self.means[:steps]), now_json(), json_list(self.intervals[level][:steps])
        )


def build_served(
    series: SeriesId, model: str, version: str, is_champion: bool, art: LoadedArtifact | None
) -> ServedModel:
    """Pre-serialise one loaded artifact."""
    if art is None:
        raise PipelineError(f"{series.name}/{model}/{version}: no artifact to serve")
    meta = art.metadata
    frame = art.forecast
    needed = ["ds", "mean"] + [f"{side}_{lv}" for lv in LEVELS for side in ("lower", "upper")]
    missing = [col for col in needed if col not in frame.columns]
    if missing:
        raise PipelineError(f"{art.path}/forecast.csv: missing columns {missing}")
    if frame.empty:
        raise PipelineError(f"{art.path}/forecast.csv: the forecast path is empty")
    values = {col: frame[col].to_numpy(dtype=float) for col in needed[1:]}
    if not np.all(np.isfinite(values["mean"])) or np.any(values["mean"] <= 0):
        raise PipelineError(f"{art.path}/forecast.csv: non-finite or non-positive mean forecast")
    horizon = min(len(frame), int(meta.horizon))
    stamps = [utc_second(ts) for ts in frame["ds"][:horizon]]
    trained_at = meta.created_at if meta.created_at.tzinfo else meta.created_at.replace(tzinfo=UTC)
    data_end = meta.training.last_ds
    data_end = data_end if data_end.tzinfo else data_end.replace(tzinfo=UTC)
    first = {col: float(values[col][0]) for col in needed[1:]}
    score = confidence_score(first["mean"], first["lower_95"], first["upper_95"], meta.last_price)
    metrics = {k: (v if v is None or math.isfinite(v) else None) for k, v in meta.metrics.items()}
    column = {col: values[col][:horizon].tolist() for col in needed[1:]}

    points = {
        levels_key(subset): items_json(
            PredictResponse,
            "forecasts",
            (
                {
                    "timestamp": stamps[i],
                    "step": i + 1,
                    "mean": column["mean"][i],
                    **{
                        f"{side}_{lv}": column[f"{side}_{lv}"][i] if lv in subset else None
                        for lv in LEVELS
                        for side in ("lower", "upper")
                    },
                }
                for i in range(horizon)
            ),
        )
        for subset in LEVEL_SETS
    }
    assert all(len(p) == horizon for p in points.values())
    # The fields the v1 answer and the model summary share.
    common: dict[str, Any] = {
        "series": series.name,
        "coin": series.coin,
        "vs_currency": series.vs,
        "timeframe": series.freq,
        "model": model,
        "is_champion": is_champion,
        "trained_at": utc_second(trained_at),
        "data_end": utc_second(data_end),
        "last_price": float(meta.last_price),
    }
    predict_template = JsonTemplate(
        PredictResponse,
        ("prediction_timestamp", "forecasts"),
        **common,
        model_version=version,
        predicted_price=first["mean"],
        confidence_score=round(score, 6),
        horizon=horizon,
    )
    compat_meta = CompatMetadata(
        trained_at=utc_second(trained_at), metrics=metrics, version=version
    )
    compat_templates = {
        lv: JsonTemplate(
            CompatPredictResponse,
            ("predictions", "timestamp", "confidence_intervals"),
            model_type=model,
            metadata=compat_meta,
            series=series.name,
            confidence_level=lv / 100,
        )
        for lv in LEVELS
    }
    intervals = {
        lv: items_json(
            CompatPredictResponse,
            "confidence_intervals",
            (
                {"step": i + 1, "lower": lo, "upper": hi}
                for i, (lo, hi) in enumerate(
                    zip(column[f"lower_{lv}"], column[f"upper_{lv}"], strict=True)
                )
            ),
        )
        for lv in LEVELS
    }
    summary = ModelSummary(
        **common,
        version=version,
        horizon=horizon,
        metrics=metrics,
        params=meta.params,
        data_source=meta.data_source,
    )
    return ServedModel(
        series=series,
        model=model,
        version=version,
        is_champion=is_champion,
        horizon=horizon,
        trained_at=trained_at,
        summary=summary,
        predict_template=predict_template,
        points=points,
        compat_templates=compat_templates,
        means=items_json(CompatPredictResponse, "predictions", column["mean"]),
        intervals=intervals,
        summary_json=summary.model_dump_json().encode(),
        _artifact=art,
    )
