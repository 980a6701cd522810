"""The API's error answers: validation details, messages, the allowed values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.api.errors import (
    ALLOWED,
    StepsError,
    details_message,
    invalid_input,
    steps_beyond_horizon,
    unauthorized,
    validation_details,
)
from pipeline.api.schemas import CompatQuery, PredictRequest
from pipeline.forecasters.base import DEFAULT_LEVELS
from pipeline.series import FREQUENCY_TABLE


def test_allowed_values_come_from_the_series_and_level_definitions() -> None:
    assert ALLOWED == {
        "timeframe": list(FREQUENCY_TABLE),
        "levels": list(DEFAULT_LEVELS),
        "confidence_level": [level / 100 for level in DEFAULT_LEVELS],
    }


def _errors(model: type[PredictRequest] | type[CompatQuery], data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return info.value


def test_validation_details_name_the_field_and_the_choices() -> None:
    exc = _errors(PredictRequest, {"timeframe": "2h", "steps": 0, "levels": [90]})
    details = {d["field"]: d for d in validation_details(exc.errors(), prefix="body")}
    assert details["body.timeframe"]["allowed"] == ["1h", "4h", "1d"]
    assert details["body.levels.0"]["allowed"] == [80, 95]
    assert details["body.steps"]["minimum"] == 1 and "maximum" not in details["body.steps"]
    message = details_message(list(details.values()))
    assert "body.timeframe: Input should be '1h', '4h' or '1d' (allowed: 1h, 4h, 1d)" in message
    assert "body.steps: Input should be greater than or equal to 1 (range: 1..)" in message


def test_invalid_input_and_steps_answers() -> None:
    error = invalid_input(_errors(CompatQuery, {"confidence_level": "0.5"}), "query")
    assert (error.status, error.code) == (422, "validation_error")
    assert error.message == (
        "query.confidence_level: Value error, must be 0.8 or 0.95 (allowed: 0.8, 0.95)"
    )
    steps = steps_beyond_horizon(StepsError("steps=31: the maximum is 30", 30), "body.steps")
    assert (steps.status, steps.code) == (422, "steps_beyond_horizon")
    assert steps.details == [
        {
            "field": "body.steps",
            "message": "steps=31: the maximum is 30",
            "minimum": 1,
            "maximum": 30,
        }
    ]


def test_unauthorized_names_the_header() -> None:
    error = unauthorized("X-API-Key")
    assert (error.status, error.message) == (401, "missing or invalid X-API-Key header")
    assert error.headers == {"WWW-Authenticate": "APIKey"}
