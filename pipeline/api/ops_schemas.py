"""Response schemas of the operational routes (models, health, reload, data, root), pydantic v2.

Like :mod:`pipeline.api.schemas` (the prediction routes' schemas), these models are the one
definition of what the routes answer and of the OpenAPI document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.api.schemas import Timeframe


class ModelSummary(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    series: str
    coin: str
    vs_currency: str
    timeframe: Timeframe
    model: str
    version: str
    is_champion: bool
    trained_at: datetime
    data_end: datetime
    issued_at: datetime = Field(description="when the forecast path served now was written")
    origin: datetime = Field(description="the last observed timestamp that path starts from")
    horizon: int
    last_price: float
    metrics: dict[str, float | None]
    params: dict[str, Any]
    data_source: str | None = None


class ModelsResponse(BaseModel):
    models: list[ModelSummary]
    champions: dict[str, str] = Field(description="series -> champion model")
    loaded_at: datetime
    load_errors: list[str]


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    model_loaded: bool
    models: int
    series: list[str]
    reason: str | None = None


class ReloadResponse(BaseModel):
    outcome: Literal["success", "failure"]
    message: str
    models: int
    changed: list[str] = Field(description="series/model entries whose version changed")
    failures: list[str] = Field(description="what failed; those keep their previous version")
    duration_ms: float
    pid: int


class DataPoint(BaseModel):
    ds: datetime
    price: float
    imputed: bool | None = None


class DataLatestResponse(BaseModel):
    series: str
    rows: list[DataPoint]
    last_ds: datetime
    rows_total: int
    age_seconds: float


class RootResponse(BaseModel):
    service: str
    version: str
    docs: str
    links: dict[str, str]
