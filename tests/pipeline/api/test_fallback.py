"""Fallbacks that say so: the chain, the fallback block, the counter; nothing without the flag."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.api.fallback import with_fallback
from pipeline.api.fallback_paths import derive_issue
from pipeline.api.fallback_schemas import FallbackInfo
from pipeline.api.registry import load_registry
from pipeline.artifacts.store import ArtifactStore
from pipeline.series import SeriesId
from tests.helpers.api_process import api_process
from tests.helpers.serving import (
    BTC_1D,
    BTC_1H,
    ORIGIN,
    FrozenClock,
    Metas,
    TestClient,
    build_models,
    metric_samples,
    processed_file,
    read_forecast,
    tamper,
    write,
)

BTC_4H = SeriesId("bitcoin", "usd", "4h")


def _predict(client: TestClient, **body: object) -> dict[str, object]:
    response = client.post("/api/v1/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _fallbacks(client: TestClient) -> list[tuple[dict[str, str], float]]:
    return metric_samples(client.get("/metrics").text, "prediction_fallbacks_total")


def test_without_the_flag_nothing_falls_back(client: TestClient) -> None:
    body = _predict(client, timeframe="1d", steps=2)
    assert body["fallback"] is None
    missing = client.post("/api/v1/predict", json={"timeframe": "1d", "model": "arima"})
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert client.post("/api/v1/predict", json={"timeframe": "4h"}).status_code == 404
    assert _fallbacks(client) == []


def test_a_served_model_says_no_fallback_was_used(client: TestClient, metas: Metas) -> None:
    body = _predict(client, timeframe="1d", steps=2, fallback=True)
    version = metas[f"{BTC_1D.name}/drift"].version
    assert body["fallback"] == {
        "used": False,
        "reason": None,
        "strategy": None,
        "requested": "bitcoin-usd-1d/champion",
        "served": f"bitcoin-usd-1d/drift/{version}",
        "message": "",
    }


def test_a_missing_model_falls_back_to_the_champion(client: TestClient, metas: Metas) -> None:
    body = _predict(client, timeframe="1d", model="arima", steps=3, fallback=True)
    info = body["fallback"]
    assert isinstance(info, dict)
    assert (info["used"], info["reason"], info["strategy"]) == (True, "model_missing", "champion")
    assert info["requested"] == "bitcoin-usd-1d/arima"
    assert info["served"] == f"bitcoin-usd-1d/drift/{metas['bitcoin-usd-1d/drift'].version}"
    assert "has no trained version" in str(info["message"])
    assert body["model"] == "drift" and body["is_champion"] is True
    plain = _predict(client, timeframe="1d", steps=3)
    assert body["forecasts"] == plain["forecasts"]  # the champion's own answer
    assert _fallbacks(client) == [({"reason": "model_missing", "strategy": "champion"}, 1.0)]


def test_the_setting_is_the_default_and_the_request_overrides_it(
    metas: Metas, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(ENABLE_FALLBACK="true")
    body = _predict(client, timeframe="1d", model="arima")
    assert isinstance(body["fallback"], dict) and body["fallback"]["strategy"] == "champion"
    refused = client.post(
        "/api/v1/predict", json={"timeframe": "1d", "model": "arima", "fallback": False}
    )
    assert refused.status_code == 404


def test_a_champion_that_fails_to_load_falls_back_to_its_previous_version(
    store: ArtifactStore, make_client: Callable[..., TestClient]
) -> None:
    first = write(store, BTC_1D, "naive", promote=True)
    bad = write(store, BTC_1D, "drift", promote=True)
    tamper(store, bad)  # the champion's checksum no longer matches: it fails at start-up
    client = make_client()
    assert client.post("/api/v1/predict", json={"timeframe": "1d"}).status_code == 404
    info = _predict(client, timeframe="1d", fallback=True)["fallback"]
    assert isinstance(info, dict)
    assert (info["reason"], info["strategy"]) == ("champion_failed", "previous_version")
    assert info["served"] == f"bitcoin-usd-1d/naive/{first.version}"
    assert f"drift/{bad.version} failed to load" in str(info["message"])


def test_a_version_kept_by_a_failed_reload_is_flagged(
    store: ArtifactStore, metas: Metas, client: TestClient
) -> None:
    bad = write(store, BTC_1D, "naive", seed=2, promote=True)
    tamper(store, bad)
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert runtime.registry_holder().reload().outcome == "failure"  # drift is kept as champion
    body = _predict(client, timeframe="1d", fallback=True)
    info = body["fallback"]
    assert isinstance(info, dict)
    assert (info["reason"], info["strategy"]) == ("champion_failed", "previous_version")
    assert body["model_version"] == metas["bitcoin-usd-1d/drift"].version
    assert "checksum mismatch" in str(info["message"])


def test_4h_is_derived_from_the_hourly_champion_every_4th_step(
    store: ArtifactStore, metas: Metas, client: TestClient, clock: FrozenClock
) -> None:
    clock.set(ORIGIN - timedelta(minutes=1))  # before the first 4h bar [00:00, 04:00) closes
    body = _predict(client, timeframe="4h", steps=12, fallback=True)
    info = body["fallback"]
    hourly = metas["bitcoin-usd-1h/drift"]
    assert isinstance(info, dict)
    assert (info["reason"], info["strategy"]) == ("series_missing", "derived_timeframe")
    assert info["served"] == f"bitcoin-usd-1h/drift/{hourly.version}"
    assert body["series"] == "bitcoin-usd-4h" and body["horizon"] == 12
    path = read_forecast(store, hourly)
    path["ds"] = pd.to_datetime(path["ds"], utc=True)
    forecasts = body["forecasts"]
    assert isinstance(forecasts, list) and len(forecasts) == 12
    for k, point in enumerate(forecasts):
        label = ORIGIN + timedelta(hours=4 * k)
        assert pd.Timestamp(point["timestamp"]) == label
        row = path[path["ds"] == label + timedelta(hours=3)].iloc[0]  # the bar's last hour
        for column in ("mean", "lower_80", "upper_80", "lower_95", "upper_95"):
            assert point[column] == pytest.approx(row[column], rel=1e-12)
    assert body["freshness"]["origin"] == "2026-11-20T20:00:00Z"  # the last complete 4h bar
    beyond = client.post("/api/v1/predict", json={"timeframe": "4h", "steps": 13, "fallback": True})
    assert beyond.status_code == 422 and beyond.json()["error"] == "steps_beyond_horizon"


def test_derivation_starts_at_the_bar_after_the_origin(store: ArtifactStore) -> None:
    meta = write(store, BTC_1H, "naive", promote=True, end=ORIGIN + timedelta(hours=13))
    source = load_registry(store).get(BTC_1H)
    issue = derive_issue(source, BTC_4H)
    assert issue.origin == ORIGIN + timedelta(hours=8)  # [08:00, 12:00) is the last whole bar
    assert pd.Timestamp(issue.forecast["ds"].iloc[0]) == ORIGIN + timedelta(hours=12)
    assert meta.horizon == 48 and len(issue.forecast) == 12
    with pytest.raises(Exception, match="1d is not built from 1h"):
        derive_issue(source, BTC_1D)


def test_daily_is_never_derived_and_naive_answers_from_processed_data(
    store: ArtifactStore, tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    write(store, BTC_1H, "drift", promote=True)
    client = make_client(FALLBACK_VOLATILITY_POINTS="10")
    refused = client.post("/api/v1/predict", json={"timeframe": "1d", "fallback": True})
    assert refused.status_code == 404
    message = refused.json()["message"]
    assert "1d is not derived from 1h" in message and "no processed data" in message
    processed_file(tmp_path / "data", BTC_1D, n=20, end=str(ORIGIN.date()))
    body = _predict(client, timeframe="1d", steps=2, fallback=True)
    info = body["fallback"]
    assert isinstance(info, dict)
    assert (info["reason"], info["strategy"]) == ("series_missing", "naive_random_walk")
    assert body["model"] == "naive" and body["last_price"] == 119.0
    sigma = float(np.std(np.diff(np.log(100.0 + np.arange(10, 20))), ddof=1))
    first, second = body["forecasts"]
    assert first["mean"] == second["mean"] == pytest.approx(119.0, rel=1e-12)
    assert np.log(first["upper_95"] / 119.0) == pytest.approx(1.959964 * sigma, rel=1e-4)
    assert np.log(second["upper_95"] / 119.0) == pytest.approx(
        1.959964 * sigma * np.sqrt(2), rel=1e-4
    )
    assert ({"reason": "series_missing", "strategy": "naive_random_walk"}, 1.0) in _fallbacks(
        client
    )


def test_batch_items_fall_back_on_their_own(client: TestClient) -> None:
    response = client.post(
        "/api/v1/predict/batch",
        json={
            "requests": [
                {"timeframe": "1d", "model": "arima", "fallback": True},
                {"timeframe": "1d", "model": "arima"},
            ]
        },
    )
    first, second = response.json()["results"]
    assert first["ok"] and first["result"]["fallback"]["strategy"] == "champion"
    assert not second["ok"] and second["status"] == 404


def test_with_fallback_fills_the_last_field_only() -> None:
    info = FallbackInfo(
        used=False, reason=None, strategy=None, requested="a/b", served="a/b/c", message=""
    )
    assert with_fallback(b'{"x":1,"fallback":null}', info).startswith(b'{"x":1,"fallback":{')
    with pytest.raises(ValueError, match="does not end with its fallback field"):
        with_fallback(b'{"x":1}', info)


@pytest.mark.slow
def test_a_real_api_process_falls_back_by_default_when_the_setting_says_so(
    tmp_path: Path,
) -> None:
    metas = build_models(tmp_path / "models", end=None)  # the real clock decides the steps
    env = {**os.environ, "ENABLE_FALLBACK": "true", "LOG_FORMAT": "json"}
    with api_process(tmp_path, env) as http:
        body = http.post("/api/v1/predict", json={"timeframe": "4h", "steps": 2}).json()
        assert body["fallback"]["strategy"] == "derived_timeframe"
        hourly = metas["bitcoin-usd-1h/drift"].version
        assert body["fallback"]["served"] == f"bitcoin-usd-1h/drift/{hourly}"
        off = http.post("/api/v1/predict", json={"timeframe": "4h", "fallback": False})
        assert off.status_code == 404
        text = http.get("/metrics").text
    assert ({"reason": "series_missing", "strategy": "derived_timeframe"}, 1.0) in (
        metric_samples(text, "prediction_fallbacks_total")
    )
    assert "fallback for bitcoin-usd-4h/champion" in (tmp_path / "api.log").read_text()
