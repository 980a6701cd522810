"""The ``trust`` block of a predict answer (see :mod:`pipeline.api.trust`).

Every v1 predict answer (and batch item) carries it: how old the served issue and its data are,
and how the model has done on live data lately, from the forecast ledger's precomputed
aggregates (:func:`pipeline.ledger.read.trust_summary`). ``null`` only when
``TRUST_IN_PREDICTIONS`` is off.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TRUST_EXAMPLE: dict[str, Any] = {
    "status": "ok",
    "reason": "412 matured points in line with the nominal coverage",
    "window": "30d",
    "coverage_95": 0.951,
    "matured_points": 412,
    "wis_ratio": 0.93,
    "issue_age_seconds": 2700,
    "data_age_seconds": 43200,
}


class TrustInfo(BaseModel):
    """Live accuracy of the model that answered, and the age of what it answered from."""

    model_config = ConfigDict(json_schema_extra={"examples": [TRUST_EXAMPLE]})

    status: Literal["ok", "degraded", "unknown"] = Field(
        description="ok; degraded: live 95% coverage significantly below nominal (the upper end "
        "of its Wilson interval under 95%) or WIS above TRUST_MAX_WIS_RATIO times naive's; "
        "unknown: fewer than TRUST_MIN_POINTS matured points, the ledger cannot be read, or a "
        "fallback path the ledger never recorded answered"
    )
    reason: str = Field(description="why the status is what it is, in words")
    window: str = Field(description="the ledger window of the figures (TRUST_WINDOW)")
    coverage_95: float | None = Field(
        None, ge=0, le=1, description="share of matured actuals inside the 95% band (live)"
    )
    matured_points: int = Field(
        0, ge=0, description="matured (scored) forecast points in the window"
    )
    wis_ratio: float | None = Field(
        None, ge=0, description="live WIS over naive's on the same points; below 1 is better"
    )
    issue_age_seconds: int = Field(
        ge=0, description="seconds from when the served issue was written to this answer"
    )
    data_age_seconds: int = Field(
        ge=0,
        description="seconds from the last observed price (the origin of the issue) to this "
        "answer: freshness.age_seconds",
    )
