"""A served version: answers from the first step after "now", pre-serialised from the models."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from pipeline.api import freshness
from pipeline.api.errors import ForecastUnavailable, StepsError
from pipeline.api.freshness import Staleness
from pipeline.api.issue import Issue, artifact_issue
from pipeline.api.ops_schemas import ModelSummary
from pipeline.api.registry import load_registry
from pipeline.api.schemas import CompatPredictResponse, PredictResponse
from pipeline.api.served import DEFAULT_STALENESS, ServedModel, build_served
from pipeline.api.slices import confidence_score
from pipeline.artifacts.store import ArtifactStore
from tests.helpers.serving import BTC_1D, BTC_1H, ORIGIN, build_models, read_forecast

HOUR = timedelta(hours=1)


@pytest.fixture
def hourly(store: ArtifactStore) -> ServedModel:
    """The 1h champion (drift): 48 hourly steps after ORIGIN."""
    build_models(store.root)
    return load_registry(store).get(BTC_1H)


def v1(
    served: ServedModel, steps: int, now: datetime, policy: Staleness = DEFAULT_STALENESS
) -> PredictResponse:
    return PredictResponse.model_validate_json(served.predict_json(steps, now=now, policy=policy))


def test_at_the_origin_the_whole_path_is_served(store: ArtifactStore) -> None:
    metas = build_models(store.root)
    served = load_registry(store).get(BTC_1H)
    body = v1(served, 5, ORIGIN)
    frame = read_forecast(store, metas[f"{BTC_1H.name}/drift"])
    assert [p.step for p in body.forecasts] == [1, 2, 3, 4, 5]
    assert [p.mean for p in body.forecasts] == pytest.approx(frame["mean"][:5].tolist())
    assert [p.upper_95 for p in body.forecasts] == pytest.approx(frame["upper_95"][:5].tolist())
    assert body.forecasts[0].timestamp == pd.Timestamp(frame["ds"][0]).to_pydatetime()
    assert body.forecasts[0].timestamp == ORIGIN + HOUR
    assert body.predicted_price == pytest.approx(frame["mean"][0])
    assert body.horizon == 48 and body.model == "drift" and body.is_champion
    only80 = PredictResponse.model_validate_json(served.predict_json(2, [80], now=ORIGIN))
    assert only80.forecasts[0].lower_95 is None and only80.forecasts[0].lower_80 is not None
    compat = CompatPredictResponse.model_validate_json(served.compat_json(3, 80, now=ORIGIN))
    assert compat.predictions == pytest.approx(frame["mean"][:3].tolist())
    assert [c.lower for c in compat.confidence_intervals] == pytest.approx(
        frame["lower_80"][:3].tolist()
    )
    with pytest.raises(StepsError, match="the maximum is 48"):
        served.predict_json(49, now=ORIGIN)


@pytest.mark.parametrize(
    ("now", "first"),
    [
        (ORIGIN - timedelta(days=1), ORIGIN + HOUR),  # before the origin: nothing is past
        (ORIGIN + timedelta(minutes=5), ORIGIN + HOUR),  # between the origin and step 1
        (ORIGIN + HOUR, ORIGIN + 2 * HOUR),  # exactly on a step: that step is past
        (ORIGIN + HOUR + timedelta(milliseconds=999), ORIGIN + 2 * HOUR),
        (ORIGIN + 20 * HOUR + timedelta(minutes=30), ORIGIN + 21 * HOUR),  # between steps
        (ORIGIN + 47 * HOUR, ORIGIN + 48 * HOUR),  # the last step is the only one left
    ],
)
def test_a_step_at_or_before_now_is_never_served(
    hourly: ServedModel, now: datetime, first: datetime
) -> None:
    body = v1(hourly, 3, now)
    stamps = [p.timestamp for p in body.forecasts]
    assert stamps[0] == first and all(stamp > now for stamp in stamps)
    assert [p.step for p in body.forecasts] == list(range(1, len(stamps) + 1))
    compat = CompatPredictResponse.model_validate_json(hourly.compat_json(3, 95, now=now))
    assert [c.step for c in compat.confidence_intervals] == list(range(1, len(stamps) + 1))
    assert compat.predictions == [p.mean for p in body.forecasts]
    assert [c.upper for c in compat.confidence_intervals] == [p.upper_95 for p in body.forecasts]


def test_steps_are_renumbered_and_the_headline_is_the_first_served_step(
    store: ArtifactStore, hourly: ServedModel
) -> None:
    frame = read_forecast(store, store.load(BTC_1H, "drift", hourly.version).metadata)
    body = v1(hourly, 4, ORIGIN + 10 * HOUR + timedelta(seconds=1))
    assert [p.step for p in body.forecasts] == [1, 2, 3, 4]
    assert [p.timestamp for p in body.forecasts] == [ORIGIN + k * HOUR for k in (11, 12, 13, 14)]
    assert [p.mean for p in body.forecasts] == pytest.approx(frame["mean"][10:14].tolist())
    assert body.predicted_price == pytest.approx(frame["mean"][10])
    expected = confidence_score(
        frame["mean"][10], frame["lower_95"][10], frame["upper_95"][10], body.last_price
    )
    assert body.confidence_score == pytest.approx(expected, abs=1e-6)
    assert (body.freshness.origin, body.data_end) == (ORIGIN, ORIGIN)


def test_ages_and_the_stale_flag_at_exact_times(hourly: ServedModel) -> None:
    at_limit = v1(hourly, 2, ORIGIN + 2 * HOUR).freshness  # exactly two periods: not older
    assert (at_limit.age_seconds, at_limit.age_periods, at_limit.stale) == (7200, 2.0, False)
    assert at_limit.steps_available == 46 and at_limit.origin == ORIGIN
    assert at_limit.issued_at == hourly.issued_at == hourly.summary.issued_at
    past = v1(hourly, 2, ORIGIN + 2 * HOUR + timedelta(seconds=1)).freshness
    assert (past.age_seconds, past.age_periods, past.stale) == (7201, 2.0, True)
    half = v1(hourly, 2, ORIGIN + timedelta(minutes=90, milliseconds=500)).freshness
    assert (half.age_seconds, half.age_periods, half.stale) == (5400, 1.5, False)
    early = v1(hourly, 2, ORIGIN - HOUR).freshness  # a clock behind the data: age 0
    assert (early.age_seconds, early.age_periods, early.steps_available) == (0, 0.0, 48)
    lenient = Staleness(after_periods=24)
    assert not v1(hourly, 2, ORIGIN + 24 * HOUR, policy=lenient).freshness.stale
    assert v1(hourly, 2, ORIGIN + 24 * HOUR + timedelta(seconds=1), policy=lenient).freshness.stale


def test_fewer_steps_left_than_asked_answers_those_and_says_so(hourly: ServedModel) -> None:
    lenient = Staleness(after_periods=100)  # only the missing steps make it stale
    now = ORIGIN + 45 * HOUR
    short = v1(hourly, 5, now, policy=lenient)
    assert [p.timestamp for p in short.forecasts] == [ORIGIN + k * HOUR for k in (46, 47, 48)]
    assert short.freshness.steps_available == 3 and short.freshness.stale
    enough = v1(hourly, 3, now, policy=lenient)
    assert len(enough.forecasts) == 3 and not enough.freshness.stale
    compat = CompatPredictResponse.model_validate_json(
        hourly.compat_json(5, 80, now=now, policy=lenient)
    )
    assert len(compat.predictions) == 3 and compat.freshness.stale


@pytest.mark.parametrize("now", [ORIGIN + 48 * HOUR, ORIGIN + timedelta(days=30)])
def test_no_step_left_is_refused_naming_the_series_origin_and_renewal(
    hourly: ServedModel, now: datetime
) -> None:
    message = (
        rf"bitcoin-usd-1h/drift \({hourly.version}\): every step of its forecast is in the "
        r"past: the path from origin 2026-11-21T00:00:00Z ended at 2026-11-23T00:00:00Z; it is "
        r"renewed when a new issue is written by the nightly training \(and the refresh job "
        r"when enabled\)"
    )
    with pytest.raises(ForecastUnavailable, match=message) as info:
        hourly.predict_json(1, now=now)
    assert info.value.code == "forecast_expired"
    with pytest.raises(ForecastUnavailable, match=message):
        hourly.compat_json(1, 95, now=now)


def test_the_hard_limit_refuses_older_issues(hourly: ServedModel) -> None:
    strict = Staleness(after_periods=2, limit_periods=3)
    assert v1(hourly, 1, ORIGIN + 3 * HOUR, policy=strict).freshness.stale
    with pytest.raises(ForecastUnavailable) as info:
        hourly.predict_json(1, now=ORIGIN + 3 * HOUR + timedelta(seconds=1), policy=strict)
    assert info.value.code == "forecast_stale"
    assert str(info.value) == (
        f"bitcoin-usd-1h/drift ({hourly.version}): the forecast from origin "
        "2026-11-21T00:00:00Z is 3.00 periods of 1h old, beyond STALE_LIMIT_PERIODS=3; it is "
        "renewed when a new issue is written by the nightly training (and the refresh job when "
        "enabled): check the retrain scheduler"
    )
    off = Staleness(after_periods=2, limit_periods=0)  # off: answered, flagged
    assert v1(hourly, 1, ORIGIN + 40 * HOUR, policy=off).freshness.stale


def test_the_offset_is_searched_once_per_second_not_per_request(
    hourly: ServedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = freshness.bisect_right

    def counting(stamps: list[int], second: int) -> int:
        calls.append(second)
        return real(stamps, second)

    monkeypatch.setattr(freshness, "bisect_right", counting)
    base = ORIGIN + 5 * HOUR
    for ms in range(0, 1000, 10):  # 100 requests within one second, v1 and compat
        hourly.predict_json(3, now=base + timedelta(milliseconds=ms))
        hourly.compat_json(3, 95, now=base + timedelta(milliseconds=ms))
    assert len(calls) == 1
    hourly.predict_json(3, now=base + timedelta(seconds=1))
    assert len(calls) == 2
    hourly.predict_json(3, now=base + timedelta(seconds=1), policy=Staleness(after_periods=9))
    assert len(calls) == 3  # other rules: assessed again
    first = hourly.moment(int((base + timedelta(seconds=2)).timestamp()), Staleness()).part
    again = hourly.moment(int((base + timedelta(seconds=3)).timestamp()), Staleness()).part
    assert first is again  # the same step is next: the serialised slice is reused


def test_a_registry_can_serve_a_newer_issue_of_a_version(store: ArtifactStore) -> None:
    build_models(store.root)
    served = load_registry(store).get(BTC_1H)
    art = store.load(BTC_1H, "drift", served.version)
    frame = art.forecast.copy()
    frame["ds"] = pd.to_datetime(frame["ds"], utc=True) + 6 * HOUR  # as if re-issued 6 h later
    issued = ORIGIN + 6 * HOUR + timedelta(minutes=2)
    issue = Issue(frame, issued, ORIGIN + 6 * HOUR, 123.0, "test issue")
    newer = build_served(BTC_1H, "drift", served.version, True, art, issue)
    body = v1(newer, 2, ORIGIN + 6 * HOUR + timedelta(minutes=5))
    assert body.forecasts[0].timestamp == ORIGIN + 7 * HOUR
    assert (body.freshness.issued_at, body.freshness.origin) == (issued, ORIGIN + 6 * HOUR)
    assert (body.freshness.age_seconds, body.last_price) == (300, 123.0)
    assert body.data_end == ORIGIN and body.model_version == served.version  # same version
    assert newer.with_champion(False).origin == ORIGIN + 6 * HOUR  # the issue is kept
    assert artifact_issue(art).origin == ORIGIN and artifact_issue(art).issued_at == (
        served.issued_at
    )


def test_answers_are_exactly_the_response_models_serialisation(store: ArtifactStore) -> None:
    build_models(store.root)
    served = load_registry(store).get(BTC_1D)
    # Times with milliseconds: pydantic leaves out a zero fraction that the answers write.
    later = ORIGIN + timedelta(days=3, hours=5, milliseconds=250)
    for raw, model in (
        (served.predict_json(3, now=ORIGIN + timedelta(milliseconds=1)), PredictResponse),
        (served.predict_json(30, [95], now=later), PredictResponse),
        (served.compat_json(2, 80, now=later), CompatPredictResponse),
        (served.summary_json, ModelSummary),
    ):
        again = model.model_validate_json(raw).model_dump_json().encode()
        # The answer's own timestamp is written to the millisecond; pydantic writes microseconds.
        assert re.sub(rb'(:\d\d\.\d{3})000Z"', rb'\1Z"', again) == raw
    body = PredictResponse.model_validate_json(served.predict_json(3, now=later))
    assert body.trained_at.microsecond == 0 and body.trained_at.utcoffset() == timedelta(0)
    assert body.prediction_timestamp == later.replace(tzinfo=UTC)


def test_every_level_set_is_pre_serialised(store: ArtifactStore) -> None:
    build_models(store.root)
    served = load_registry(store).get(BTC_1H, "naive")
    second = int((ORIGIN + 2 * HOUR).timestamp())
    part = served.moment(second, Staleness()).part
    assert part is not None and set(part.points) == {"80,95", "80", "95"}
    assert all(len(points) == served.horizon - 2 for points in part.points.values())
    now = ORIGIN + 2 * HOUR
    both = PredictResponse.model_validate_json(served.predict_json(1, [95, 80], now=now))
    point = both.forecasts[0]
    assert None not in (point.lower_80, point.upper_80, point.lower_95, point.upper_95)
    only95 = PredictResponse.model_validate_json(served.predict_json(1, [95], now=now)).forecasts
    assert (only95[0].lower_80, only95[0].upper_80) == (None, None)
    assert only95[0].lower_95 == point.lower_95
