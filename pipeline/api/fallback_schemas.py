"""The ``fallback`` block of a predict answer (see :mod:`pipeline.api.fallback`).

A request that asks for fallbacks (``"fallback": true``, default ``ENABLE_FALLBACK``) gets this
block in every answer: ``used`` false when the model asked for answered, else why it could not
(``reason``), what answered instead (``strategy``, ``served``) and a sentence saying so. Without
the flag the block is ``null`` and nothing falls back.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Why the model asked for could not answer.
FallbackReason = Literal[
    "model_missing",  # the named model has no version for the series
    "model_failed",  # the named model has versions on disk, but none loaded
    "champion_failed",  # the champion's version failed to load
    "no_champion",  # the series has models but no champion
    "series_missing",  # nothing is loaded for the series
]
#: What answered instead.
FallbackStrategy = Literal["champion", "previous_version", "derived_timeframe", "naive_random_walk"]
FALLBACK_REASONS: tuple[str, ...] = FallbackReason.__args__  # type: ignore[attr-defined]
FALLBACK_STRATEGIES: tuple[str, ...] = FallbackStrategy.__args__  # type: ignore[attr-defined]


class FallbackInfo(BaseModel):
    """Whether a fallback answered, why, and what answered instead."""

    model_config = ConfigDict(
        frozen=True,  # hashable: the answers' blocks are cached
        json_schema_extra={
            "examples": [
                {
                    "used": True,
                    "reason": "series_missing",
                    "strategy": "derived_timeframe",
                    "requested": "bitcoin-usd-4h/champion",
                    "served": "bitcoin-usd-1h/drift/20261121T101500123456Z-3fa2c1",
                    "message": "nothing is loaded for bitcoin-usd-4h; every 4th step of the "
                    "bitcoin-usd-1h champion's path answered",
                }
            ]
        },
    )

    used: bool = Field(description="true when something other than the model asked for answered")
    reason: FallbackReason | None = Field(
        None, description="why the model asked for could not answer (null when used is false)"
    )
    strategy: FallbackStrategy | None = Field(
        None,
        description="what answered instead: the series' champion, the champion's previous "
        "version, the finer timeframe's champion path at every k-th step (4h from 1h), or a "
        "naive random walk from the processed data with bands from its recent volatility",
    )
    requested: str = Field(description="series/model asked for, e.g. bitcoin-usd-4h/champion")
    served: str = Field(description="series/model/version that answered")
    message: str = Field("", description="what happened, in words")
