"""A served version: the confidence score and the answers pre-serialised from the models."""

from __future__ import annotations

import math
import re
from datetime import timedelta

import pandas as pd
import pytest
from scipy import stats

from pipeline.api.errors import StepsError
from pipeline.api.registry import load_registry
from pipeline.api.schemas import CompatPredictResponse, ModelSummary, PredictResponse
from pipeline.api.served import confidence_score
from pipeline.artifacts.store import ArtifactStore
from tests.helpers.serving import BTC_1D, BTC_1H, build_models, read_forecast


def test_confidence_score_follows_the_lognormal_rule() -> None:
    mean, lo, hi, last = 105.0, 90.0, 122.0, 100.0
    sd = (math.log(hi) - math.log(lo)) / (2 * 1.959964)
    p_up = 1 - stats.norm.cdf(math.log(last), loc=math.log(mean), scale=sd)
    assert confidence_score(mean, lo, hi, last) == pytest.approx(p_up, rel=1e-9)
    # A predicted fall scores the probability of falling.
    p_up_down = 1 - stats.norm.cdf(math.log(last), loc=math.log(95.0), scale=sd)
    assert confidence_score(95.0, lo, hi, last) == pytest.approx(1 - p_up_down, rel=1e-9)
    assert confidence_score(100.0, lo, hi, last) == pytest.approx(0.5)
    assert confidence_score(101.0, 101.0, 101.0, last) == 1.0  # no uncertainty, a rise
    # The wider the distribution, the weaker the view on the direction.
    wide, narrow = (
        confidence_score(150.0, 10.0, 2000.0, last),
        confidence_score(150.0, 140, 160, 100),
    )
    assert 0.5 < wide < narrow <= 1.0


def test_predict_json_slices_the_precomputed_path(store: ArtifactStore) -> None:
    metas = build_models(store.root)
    served = load_registry(store).get(BTC_1H)
    body = PredictResponse.model_validate_json(served.predict_json(5))
    frame = read_forecast(store, metas[f"{BTC_1H.name}/drift"])
    assert [p.step for p in body.forecasts] == [1, 2, 3, 4, 5]
    assert [p.mean for p in body.forecasts] == pytest.approx(frame["mean"][:5].tolist())
    assert [p.upper_95 for p in body.forecasts] == pytest.approx(frame["upper_95"][:5].tolist())
    assert body.forecasts[0].timestamp == pd.Timestamp(frame["ds"][0]).to_pydatetime()
    assert body.predicted_price == pytest.approx(frame["mean"][0])
    assert body.horizon == 48 and body.model == "drift" and body.is_champion
    only80 = PredictResponse.model_validate_json(served.predict_json(2, [80]))
    assert only80.forecasts[0].lower_95 is None and only80.forecasts[0].lower_80 is not None
    compat = CompatPredictResponse.model_validate_json(served.compat_json(3, 80))
    assert compat.predictions == pytest.approx(frame["mean"][:3].tolist())
    assert [c.lower for c in compat.confidence_intervals] == pytest.approx(
        frame["lower_80"][:3].tolist()
    )
    with pytest.raises(StepsError, match="the maximum is 48"):
        served.predict_json(49)


def test_answers_are_exactly_the_response_models_serialisation(store: ArtifactStore) -> None:
    build_models(store.root)
    served = load_registry(store).get(BTC_1D)
    for raw, model in (
        (served.predict_json(3), PredictResponse),
        (served.predict_json(30, [95]), PredictResponse),
        (served.compat_json(2, 80), CompatPredictResponse),
        (served.summary_json, ModelSummary),
    ):
        again = model.model_validate_json(raw).model_dump_json().encode()
        # The answer's own timestamp is written to the millisecond; pydantic writes microseconds.
        assert re.sub(rb'(:\d\d\.\d{3})000Z"', rb'\1Z"', again) == raw
    body = PredictResponse.model_validate_json(served.predict_json(3))
    assert body.trained_at.microsecond == 0 and body.trained_at.utcoffset() == timedelta(0)
    assert body.prediction_timestamp.tzinfo is not None


def test_every_level_set_is_pre_serialised(store: ArtifactStore) -> None:
    build_models(store.root)
    served = load_registry(store).get(BTC_1H, "naive")
    assert set(served.points) == {"80,95", "80", "95"}
    assert all(len(points) == served.horizon == 48 for points in served.points.values())
    both = PredictResponse.model_validate_json(served.predict_json(1, [95, 80])).forecasts[0]
    assert None not in (both.lower_80, both.upper_80, both.lower_95, both.upper_95)
    only95 = PredictResponse.model_validate_json(served.predict_json(1, [95])).forecasts[0]
    assert (only95.lower_80, only95.upper_80) == (None, None)
    assert only95.lower_95 == both.lower_95
