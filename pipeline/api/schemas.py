"""Request and response schemas of the prediction API (pydantic v2), with examples for the docs.

These models are the one definition of the wire format: the hot endpoints answer with bytes
that :mod:`pipeline.api.served` serialises from them once per loaded version, the routes
validate requests with them and the OpenAPI document is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from pipeline.api.fallback_schemas import FallbackInfo
from pipeline.api.trust_schemas import TRUST_EXAMPLE, TrustInfo
from pipeline.forecasters.base import DEFAULT_LEVELS
from pipeline.series import COIN_PATTERN, FREQUENCY_TABLE, VS_PATTERN

if TYPE_CHECKING:
    Timeframe = str
    Level = int
else:
    Timeframe = Literal[tuple(FREQUENCY_TABLE)]
    Level = Literal[DEFAULT_LEVELS]

#: The interval levels as ``confidence_level`` values of the compatibility endpoint (0.8, 0.95).
CONFIDENCE_LEVELS: tuple[float, ...] = tuple(level / 100 for level in DEFAULT_LEVELS)
#: Full-match patterns of the ids a request can name.
COIN_REGEX = rf"^{COIN_PATTERN}$"
VS_REGEX = rf"^{VS_PATTERN}$"
MODEL_REGEX = r"^[a-z0-9_-]{1,64}$"

CONFIDENCE_SCORE_DOC = (
    "The model's probability of the predicted direction of move at step 1, from its forecast "
    "distribution: log price at step 1 is taken as normal with median log(mean) and standard "
    "deviation (log upper_95 - log lower_95) / (2 * 1.959964); p_up = P(price > last_price); "
    "the score is p_up when the predicted price is >= last_price, else 1 - p_up. 0.5 means the "
    "model has no view on the direction; values near 1 mean it is confident of the direction."
)

_COIN = Field("bitcoin", pattern=COIN_REGEX, description="CoinGecko coin id", examples=["bitcoin"])
_VS = Field("usd", pattern=VS_REGEX, description="quote currency", examples=["usd"])


def _known_level(value: float) -> float:
    if value not in CONFIDENCE_LEVELS:
        raise ValueError(f"must be {' or '.join(str(v) for v in CONFIDENCE_LEVELS)}")
    return value


#: ``confidence_level`` of the compatibility endpoint: one of :data:`CONFIDENCE_LEVELS`.
ConfidenceLevel = Annotated[
    float,
    AfterValidator(_known_level),
    Field(
        description=f"interval level: {' or '.join(str(v) for v in CONFIDENCE_LEVELS)}",
        json_schema_extra={"enum": list(CONFIDENCE_LEVELS)},
    ),
]


class ErrorDetail(BaseModel):
    field: str = Field(description="where the problem is, e.g. body.steps or query.coin")
    message: str
    allowed: list[Any] | None = Field(None, description="the allowed values, when a finite set")
    minimum: float | None = Field(None, description="the smallest allowed value, for a range")
    maximum: float | None = Field(None, description="the largest allowed value, for a range")


class ErrorResponse(BaseModel):
    """Every error: a stable code, a message to act on, and the request id to quote."""

    error: str = Field(examples=["validation_error"])
    message: str = Field(examples=["body.steps: Input should be greater than or equal to 1"])
    request_id: str = Field(examples=["0f3c9a6e2b7d4c1e9a8b7c6d5e4f3a2b"])
    details: list[ErrorDetail] | None = None
    available: list[str] | None = Field(None, description="what exists, on a 404")


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"coin": "bitcoin", "vs_currency": "usd", "timeframe": "1d", "steps": 7}]
        },
    )

    coin: str = _COIN
    vs_currency: str = _VS
    timeframe: Timeframe = Field("1d", description="series frequency")
    steps: int = Field(7, ge=1, le=1000, description="steps ahead, 1..the artifact's horizon")
    model: str = Field(
        "champion",
        pattern=MODEL_REGEX,
        description="'champion' (the promoted model) or a model name such as naive, drift, arima",
    )
    levels: list[Level] = Field(
        list(DEFAULT_LEVELS),
        min_length=1,
        max_length=2,
        description="interval levels to return (%)",
    )
    fallback: bool | None = Field(
        None,
        description="when the model cannot answer, fall back (champion, previous version, a "
        "finer timeframe's path, naive random walk) and say so in the answer's `fallback` "
        "block; default: the ENABLE_FALLBACK setting (off)",
    )


class ForecastPoint(BaseModel):
    timestamp: datetime = Field(description="UTC time the step forecasts")
    step: int = Field(ge=1)
    mean: float = Field(description="point forecast (median of the forecast distribution)")
    lower_80: float | None = None
    upper_80: float | None = None
    lower_95: float | None = None
    upper_95: float | None = None


#: An example of :class:`Freshness`, shown in the documents of every forecast answer.
_FRESHNESS_EXAMPLE: dict[str, Any] = {
    "issued_at": "2026-11-21T10:15:00Z",
    "origin": "2026-11-21T00:00:00Z",
    "age_seconds": 43200,
    "age_periods": 0.5,
    "stale": False,
    "steps_available": 30,
}


class Freshness(BaseModel):
    """How fresh the forecast path behind an answer is (part of every forecast answer)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_FRESHNESS_EXAMPLE]})

    issued_at: datetime = Field(
        description="when this forecast path (issue) was written: by the training run that made "
        "the version, or by a later refresh of it from newer prices"
    )
    origin: datetime = Field(
        description="the last observed timestamp the path starts from; step 1 of an answer is "
        "the first forecast timestamp strictly after the time of the answer"
    )
    age_seconds: int = Field(
        ge=0, description="the age of the issue: seconds from origin to the time of the answer"
    )
    age_periods: float = Field(
        ge=0,
        description="the age of the issue in periods of the timeframe (1h, 4h or 1d), "
        "to 3 decimals",
    )
    stale: bool = Field(
        description="true when the issue is older than STALE_AFTER_PERIODS periods (default 2) "
        "or when fewer steps remain in the path than were asked"
    )
    steps_available: int = Field(
        ge=0,
        description="steps of the path still ahead of the time of the answer; an answer holds "
        "min(steps, steps_available) steps",
    )


class PredictResponse(BaseModel):
    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "series": "bitcoin-usd-1d",
                    "coin": "bitcoin",
                    "vs_currency": "usd",
                    "timeframe": "1d",
                    "model": "drift",
                    "model_version": "20261121T101500Z-3fa2c1",
                    "is_champion": True,
                    "trained_at": "2026-11-21T10:15:00Z",
                    "data_end": "2026-11-21T00:00:00Z",
                    "last_price": 91234.5,
                    "predicted_price": 91310.2,
                    "confidence_score": 0.52,
                    "prediction_timestamp": "2026-11-21T12:00:00.123Z",
                    "freshness": _FRESHNESS_EXAMPLE,
                    "horizon": 30,
                    "forecasts": [
                        {
                            "timestamp": "2026-11-22T00:00:00Z",
                            "step": 1,
                            "mean": 91310.2,
                            "lower_80": 87990.1,
                            "upper_80": 94755.3,
                            "lower_95": 86280.4,
                            "upper_95": 96633.0,
                        }
                    ],
                    "trust": TRUST_EXAMPLE,
                }
            ]
        },
    )

    series: str
    coin: str
    vs_currency: str
    timeframe: Timeframe
    model: str = Field(description="the model that answered (the champion's name if asked)")
    model_version: str
    is_champion: bool
    trained_at: datetime = Field(description="when the version was written")
    data_end: datetime = Field(description="last observation the model was trained on")
    last_price: float = Field(description="the price at the forecast's origin")
    predicted_price: float = Field(description="the first served step's point forecast")
    confidence_score: float = Field(ge=0, le=1, description=CONFIDENCE_SCORE_DOC)
    prediction_timestamp: datetime = Field(description="when this answer was produced (UTC)")
    freshness: Freshness = Field(description="issue time, origin, age and the stale flag")
    horizon: int = Field(description="the most steps this model can answer")
    forecasts: list[ForecastPoint] = Field(
        description="the steps after the time of the answer, numbered from 1 (fewer than asked "
        "when fewer remain: see freshness.steps_available)"
    )
    trust: TrustInfo | None = Field(
        None,
        description="issue and data age, live 95% coverage, WIS ratio to naive and a status "
        "(see TrustInfo); null only when TRUST_IN_PREDICTIONS is off",
    )
    fallback: FallbackInfo | None = Field(
        None, description="null unless the request asked for fallbacks (see FallbackInfo)"
    )


@dataclass(frozen=True)
class InvalidRequest:
    """A batch item that failed validation: pydantic's errors, answered as that item's error."""

    errors: list[Any]


def _validate_item(value: Any) -> PredictRequest | InvalidRequest:
    try:
        return PredictRequest.model_validate(value)
    except ValidationError as exc:
        return InvalidRequest(list(exc.errors(include_url=False)))


#: A batch item: validated on its own, so that one bad item does not fail the batch.
#: Typed ``Any`` so that the documents show only PredictRequest; the value is either type.
BatchItemRequest = Annotated[
    Any, PlainValidator(_validate_item, json_schema_input_type=PredictRequest)
]


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "requests": [
                        {"timeframe": "1d", "steps": 7},
                        {"timeframe": "1h", "steps": 24, "model": "naive"},
                    ]
                }
            ]
        }
    )

    requests: list[BatchItemRequest] = Field(
        min_length=1,
        description="predict requests (at most MAX_BATCH_SIZE, default 100); each is validated "
        "on its own, so one bad item does not fail the batch",
    )


class BatchItem(BaseModel):
    index: int
    ok: bool
    result: PredictResponse | None = None
    error: ErrorResponse | None = None
    status: int = Field(description="the HTTP status this item would have had alone")


class BatchMetrics(BaseModel):
    count: int
    errors: int
    duration_ms: float


class BatchResponse(BaseModel):
    results: list[BatchItem]
    batch_metrics: BatchMetrics


class CompatPredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"steps": 7, "confidence_level": 0.95}]},
    )

    steps: int = Field(1, ge=1, le=100)
    confidence_level: ConfidenceLevel = CONFIDENCE_LEVELS[-1]
    coin: str | None = Field(None, description="default: the first configured coin")
    timeframe: Timeframe | None = Field(None, description="default: the first configured one")


class CompatQuery(BaseModel):
    """Query parameters of ``GET /predict``."""

    steps: int = Field(1, ge=1, le=100, description="steps ahead")
    coin: str | None = Field(
        None, pattern=COIN_REGEX, description="default: the first configured coin"
    )
    timeframe: Timeframe | None = Field(None, description="default: the first configured one")
    confidence_level: ConfidenceLevel = CONFIDENCE_LEVELS[-1]


class CompatInterval(BaseModel):
    step: int
    lower: float
    upper: float


class CompatMetadata(BaseModel):
    trained_at: datetime
    metrics: dict[str, float | None]
    version: str


class CompatPredictResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "predictions": [91310.2, 91385.9],
                    "timestamp": "2026-11-21T12:00:00.123Z",
                    "model_type": "drift",
                    "confidence_intervals": [
                        {"step": 1, "lower": 86280.4, "upper": 96633.0},
                        {"step": 2, "lower": 84100.7, "upper": 99190.2},
                    ],
                    "metadata": {
                        "trained_at": "2026-11-21T10:15:00Z",
                        "metrics": {"mase": 1.01},
                        "version": "20261121T101500Z-3fa2c1",
                    },
                    "series": "bitcoin-usd-1d",
                    "confidence_level": 0.95,
                    "freshness": _FRESHNESS_EXAMPLE,
                }
            ]
        }
    )

    predictions: list[float]
    timestamp: datetime = Field(description="when this answer was produced (UTC)")
    model_type: str
    confidence_intervals: list[CompatInterval]
    metadata: CompatMetadata
    series: str
    confidence_level: float
    freshness: Freshness = Field(description="issue time, origin, age and the stale flag")
