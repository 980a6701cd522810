"""Response schemas of the live-accuracy endpoints (``/api/v1/accuracy``,
``/api/v1/forecasts/history``): the ledger's figures as JSON (see :mod:`pipeline.ledger.read`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

Figure = float | int | None


class AccuracyRow(BaseModel):
    model: str
    champion: bool = Field(description="the model that served the newest recorded issue")
    figures: dict[str, Figure] = Field(
        description="pooled over every step: n (matured points), coverage_80/95 with their "
        "Wilson bounds (_low/_high), width, Winkler, WIS, MASE, bias, and each as a ratio to "
        "naive on the same points (*_ratio, n_paired)"
    )
    steps: dict[str, dict[str, Figure]] | None = Field(
        None, description="the same figures per forecast step (only with steps=true)"
    )


class AccuracyResponse(BaseModel):
    series: str = Field(examples=["bitcoin-usd-1d"])
    window: str = Field(examples=["30d"])
    as_of: datetime | None = Field(description="the newest scored timestamp of the series")
    champion: str | None
    models: list[AccuracyRow] = Field(description="best WIS ratio to naive first")


class ServedIssueResponse(BaseModel):
    series: str = Field(examples=["bitcoin-usd-1d"])
    as_of: datetime = Field(description="the time asked about")
    model: str
    version: str
    issue_id: str
    issued_at: datetime
    origin: datetime = Field(description="the last observed timestamp the issue forecast from")
    forecast_sha256: str
    model_sha256: str
    path: str = Field(description="the issue's forecast file in the artifact store")
