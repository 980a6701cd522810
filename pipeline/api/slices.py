"""The answers of a forecast path from one step on, serialised by the response models.

A request is answered from the first step after its time, with the steps numbered from 1, so the
bytes of an answer depend on how many steps are past (the *offset*). :func:`build_slice` makes
them for one offset, from the pydantic models of :mod:`pipeline.api.schemas` (the one wire
format), and :class:`~pipeline.api.served.ServedModel` keeps the slice of the current offset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations, permutations
from typing import Any

from pipeline.api.issue import ForecastPath
from pipeline.api.schemas import CompatPredictResponse, PredictResponse
from pipeline.api.wire import JsonTemplate, items_json
from pipeline.forecasters.base import DEFAULT_LEVELS

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
    key = _LEVEL_KEYS.get(tuple(levels))
    return key if key is not None else ",".join(str(level) for level in sorted(set(levels)))


#: Every non-empty set of levels a request can ask for.
LEVEL_SETS: tuple[tuple[int, ...], ...] = tuple(
    subset for size in range(len(LEVELS), 0, -1) for subset in combinations(LEVELS, size)
)
#: The key of every order a request can list those levels in (the hot path looks it up).
_LEVEL_KEYS: dict[tuple[int, ...], str] = {
    order: ",".join(str(level) for level in subset)
    for subset in LEVEL_SETS
    for order in permutations(subset)
}


@dataclass(frozen=True)
class PathSlice:
    """The answers of a path from one offset: steps renumbered from 1, serialised by the models.

    ``offset`` steps of the path are past; the slice holds the others. Built on the first request
    that needs it (when time crosses a step), then reused until the next step is crossed.
    """

    offset: int
    #: v1: open fields prediction_timestamp, freshness, forecasts, trust
    predict_template: JsonTemplate
    #: v1: per level-set key ("80,95", "80", "95"), the JSON of each forecast point
    points: dict[str, list[bytes]]
    #: compat: the point forecasts as JSON numbers
    means: list[bytes]
    #: compat, per level: the JSON of each interval
    intervals: dict[int, list[bytes]]


def build_slice(path: ForecastPath, common: dict[str, Any], offset: int) -> PathSlice:
    """The answers of ``path`` from ``offset`` on; ``common`` holds the v1 answer's fixed fields."""
    stamps, column = path.stamps, path.columns
    rows = range(offset, len(stamps))
    points = {
        levels_key(subset): items_json(
            PredictResponse,
            "forecasts",
            (
                {
                    "timestamp": stamps[i],
                    "step": i - offset + 1,
                    "mean": column["mean"][i],
                    **{
                        f"{side}_{lv}": column[f"{side}_{lv}"][i] if lv in subset else None
                        for lv in LEVELS
                        for side in ("lower", "upper")
                    },
                }
                for i in rows
            ),
        )
        for subset in LEVEL_SETS
    }
    first = {col: values[offset] for col, values in column.items()}
    last_price = common["last_price"]
    score = confidence_score(first["mean"], first["lower_95"], first["upper_95"], last_price)
    template = JsonTemplate(
        PredictResponse,
        ("prediction_timestamp", "freshness", "forecasts", "trust"),
        **common,
        predicted_price=first["mean"],
        confidence_score=round(score, 6),
    )
    intervals = {
        lv: items_json(
            CompatPredictResponse,
            "confidence_intervals",
            (
                {
                    "step": i - offset + 1,
                    "lower": column[f"lower_{lv}"][i],
                    "upper": column[f"upper_{lv}"][i],
                }
                for i in rows
            ),
        )
        for lv in LEVELS
    }
    means = items_json(CompatPredictResponse, "predictions", column["mean"][offset:])
    return PathSlice(offset, template, points, means, intervals)
