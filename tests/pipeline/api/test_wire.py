"""JSON templates from the response models, item serialisation and the wire timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from pipeline.api.wire import (
    JsonTemplate,
    iso,
    items_json,
    json_list,
    now_iso,
    now_json,
    utc_second,
)


class Doc(BaseModel):
    name: str
    at: datetime
    score: float = Field(ge=0, le=1)
    values: list[float]
    count: int


def test_a_template_fills_its_slots_in_the_models_field_order() -> None:
    template = JsonTemplate(Doc, ("values", "at"), name="x", score=0.5, count=3)
    assert template.fill(b"[1.5]", b'"2026-01-01T00:00:00Z"') == (
        b'{"name":"x","at":"2026-01-01T00:00:00Z","score":0.5,"values":[1.5],"count":3}'
    )
    whole = Doc(name="x", at=datetime(2026, 1, 1, tzinfo=UTC), score=0.5, values=[1.5], count=3)
    assert template.fill(b"[1.5]", b'"2026-01-01T00:00:00Z"') == whole.model_dump_json().encode()


def test_a_template_validates_its_fixed_fields() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        JsonTemplate(Doc, ("values", "at"), name="x", score=2.0, count=3)
    with pytest.raises(TypeError, match=r"Doc has no field\(s\) \['colour'\]"):
        JsonTemplate(Doc, ("colour",), name="x")


def test_items_are_serialised_with_the_list_fields_type() -> None:
    assert items_json(Doc, "values", [1, 2.5, float("nan")]) == [b"1.0", b"2.5", b"null"]
    assert json_list(items_json(Doc, "values", [1, 2])) == b"[1.0,2.0]"
    with pytest.raises(ValidationError):
        items_json(Doc, "values", ["not a number"])


def test_wire_times_are_utc_to_the_second() -> None:
    assert iso(pd.Timestamp("2026-11-21 10:15:00.9")) == "2026-11-21T10:15:00Z"  # naive = UTC
    stamp = utc_second(pd.Timestamp("2026-11-21T12:15:00.5+02:00"))
    assert stamp == datetime(2026, 11, 21, 10, 15, tzinfo=UTC) and stamp.utcoffset() is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", now_iso())


def test_the_answer_timestamp_is_the_given_time_to_the_millisecond() -> None:
    origin = datetime(2026, 11, 21, tzinfo=UTC).timestamp()
    assert now_json(origin) == b'"2026-11-21T00:00:00.000Z"'
    assert now_json(origin + 0.001) == b'"2026-11-21T00:00:00.001Z"'  # no float error drops it
    assert now_json(origin + 59.9996) == b'"2026-11-21T00:00:59.999Z"'  # never rounds to 1000
    assert now_iso(origin + 3600.25) == "2026-11-21T01:00:00.250Z"


class Wide(BaseModel):
    first: int
    label: str
    at: datetime
    values: list[float]
    count: int


@pytest.mark.parametrize("slots", [("at", "values", "count"), ("count", "first", "values", "at")])
def test_templates_of_three_and_four_slots_fill_like_the_model(slots: tuple[str, ...]) -> None:
    whole = Wide(first=1, label="x", at=datetime(2026, 1, 1, tzinfo=UTC), values=[1.5], count=3)
    fixed = {k: v for k, v in whole.model_dump().items() if k not in slots}
    template = JsonTemplate(Wide, slots, **fixed)
    dumped = whole.model_dump(mode="json")
    parts = [TypeAdapter(Any).dump_json(dumped[name]) for name in slots]
    assert template.fill(*parts) == whole.model_dump_json().encode()
