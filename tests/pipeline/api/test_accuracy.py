"""The live-accuracy endpoints on a real ledger filled by the pipeline's own hook."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from pipeline.config import load_settings
from pipeline.ledger.db import open_ledger
from pipeline.ledger.hooks import record_and_score
from pipeline.ledger.score import score
from pipeline.series import SeriesId
from tests.helpers.ledger import StoreWithIssues, build_store
from tests.helpers.postgres import PostgresServer
from tests.helpers.serving import TestClient

Client = Callable[..., TestClient]
QUERY = {"coin": "bitcoin", "vs_currency": "usd", "timeframe": "1d"}


@pytest.fixture
def recorded() -> StoreWithIssues:
    settings = load_settings()
    built = build_store(settings.models_dir, settings.data_dir, refreshes=4, observed=140)
    assert record_and_score(settings, [built.series])
    return built


def test_accuracy_lists_every_model_with_the_champion_marked(
    recorded: StoreWithIssues, make_client: Client
) -> None:
    client = make_client()
    response = client.get("/api/v1/accuracy", params={**QUERY, "window": "all"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["series"] == "bitcoin-usd-1d" and body["window"] == "all"
    assert body["champion"] == "naive"
    models = {row["model"]: row for row in body["models"]}
    assert set(models) == {"naive", "drift"}
    assert models["naive"]["champion"] and not models["drift"]["champion"]
    naive = models["naive"]["figures"]
    assert naive["n"] > 0 and naive["wis_ratio"] == pytest.approx(1.0)
    assert 0.0 <= naive["coverage_95"] <= 1.0
    assert models["naive"]["steps"] is None


def test_accuracy_per_step_detail_and_one_model(
    recorded: StoreWithIssues, make_client: Client
) -> None:
    client = make_client()
    params = {**QUERY, "window": "all", "model": "drift", "steps": "true"}
    body = client.get("/api/v1/accuracy", params=params).json()
    assert [row["model"] for row in body["models"]] == ["drift"]
    steps = body["models"][0]["steps"]
    assert steps and min(int(k) for k in steps) == 1
    assert sum(figs["n"] for figs in steps.values()) == body["models"][0]["figures"]["n"]


def test_accuracy_of_a_series_without_ledger_rows_is_404(
    recorded: StoreWithIssues, make_client: Client
) -> None:
    client = make_client()
    response = client.get("/api/v1/accuracy", params={**QUERY, "coin": "ethereum"})
    assert response.status_code == 404
    assert response.json()["error"] == "not_in_ledger"
    unknown = client.get("/api/v1/accuracy", params={**QUERY, "model": "prophet"})
    assert unknown.status_code == 404 and "prophet" in unknown.json()["message"]
    bad = client.get("/api/v1/accuracy", params={**QUERY, "window": "1y"})
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"


def test_history_answers_what_was_served_at_a_past_time(
    recorded: StoreWithIssues, make_client: Client
) -> None:
    client = make_client()
    info = recorded.store.latest_issue(recorded.series, "naive", recorded.versions["naive"])
    assert info is not None
    newest = info.record
    when = newest.issued_at + timedelta(seconds=1)
    params = {**QUERY, "as_of": when.isoformat()}
    response = client.get("/api/v1/forecasts/history", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "naive" and body["version"] == recorded.versions["naive"]
    assert body["issue_id"] == newest.issue_id
    assert body["forecast_sha256"] == newest.forecast_sha256 and body["path"]
    early = newest.issued_at - timedelta(days=3650)
    before = client.get("/api/v1/forecasts/history", params={**QUERY, "as_of": early.isoformat()})
    assert before.status_code == 404 and before.json()["error"] == "not_in_ledger"


def test_accuracy_endpoints_need_the_api_key(
    recorded: StoreWithIssues, make_client: Client
) -> None:
    client = make_client(API_KEY="s3cret-key")
    params = {**QUERY, "window": "all"}
    assert client.get("/api/v1/accuracy", params=params).status_code == 401
    ok = client.get("/api/v1/accuracy", params=params, headers={"X-API-Key": "s3cret-key"})
    assert ok.status_code == 200
    history = client.get("/api/v1/forecasts/history", params={**QUERY, "as_of": "2030-01-01"})
    assert history.status_code == 401


def test_an_unreachable_ledger_is_503_and_the_rest_keeps_serving(make_client: Client) -> None:
    client = make_client(LEDGER_URL="postgresql://nobody@127.0.0.1:1/ledger")
    response = client.get("/api/v1/accuracy", params=QUERY)
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "ledger_unavailable" and "LEDGER_URL" in body["message"]
    history = client.get("/api/v1/forecasts/history", params={**QUERY, "as_of": "2030-01-01"})
    assert history.status_code == 503
    assert client.get("/health/live").status_code == 200
    assert client.get("/api/v1/models").status_code == 200


def _rescore(built: StoreWithIssues, factor: float) -> None:
    """Correct every observed price by ``factor``: the ledger rescores every matured step."""
    settings = load_settings()
    prices = built.y.iloc[:140] * factor
    ledger = open_ledger(settings)
    try:
        assert score(ledger, settings, [built.series], prices={built.series.name: prices}).scored
    finally:
        ledger.close()


def _figures(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/v1/accuracy", params={**QUERY, "window": "all"})
    assert response.status_code == 200, response.text
    return {row["model"]: row["figures"] for row in response.json()["models"]}


def test_accuracy_answers_are_cached_until_their_max_age(
    recorded: StoreWithIssues, make_client: Client
) -> None:
    client = make_client(ACCURACY_CACHE_SECONDS="60")
    cache = client.app.state.runtime.accuracy
    now = [1000.0]
    cache.clock = lambda: now[0]
    first = _figures(client)
    _rescore(recorded, 1.05)
    assert _figures(client) == first  # the worker's copy: no ledger read
    assert cache.hits == 1 and len(cache) == 1
    now[0] += 60.0
    fresh = _figures(client)
    assert fresh != first and fresh["drift"]["wis"] != first["drift"]["wis"]
    # One model or the per-step detail is another answer, read from the ledger.
    one = client.get("/api/v1/accuracy", params={**QUERY, "window": "all", "model": "drift"})
    assert one.json()["models"][0]["figures"] == fresh["drift"]


def test_a_model_reload_drops_the_cached_answers(
    recorded: StoreWithIssues, make_client: Client
) -> None:
    client = make_client(ACCURACY_CACHE_SECONDS="3600", ADMIN_API_KEY="adm")
    first = _figures(client)
    _rescore(recorded, 0.95)
    assert _figures(client) == first
    recorded.store.promote(recorded.series, "drift", recorded.versions["drift"], "test")
    assert client.post("/model/reload", headers={"X-Admin-Key": "adm"}).status_code == 200
    assert _figures(client) != first


def test_without_a_cache_every_answer_reads_the_ledger(
    recorded: StoreWithIssues, make_client: Client
) -> None:
    client = make_client(ACCURACY_CACHE_SECONDS="0")
    first = _figures(client)
    _rescore(recorded, 1.05)
    assert _figures(client) != first
    assert len(client.app.state.runtime.accuracy) == 0


def test_not_found_answers_are_not_cached(recorded: StoreWithIssues, make_client: Client) -> None:
    client = make_client(ACCURACY_CACHE_SECONDS="3600")
    params = {**QUERY, "coin": "ethereum"}
    assert client.get("/api/v1/accuracy", params=params).status_code == 404
    settings = load_settings()
    ethereum = SeriesId("ethereum", "usd", "1d")
    build_store(settings.models_dir, settings.data_dir, observed=140, series=ethereum)
    assert record_and_score(settings, [ethereum])
    assert client.get("/api/v1/accuracy", params=params).status_code == 200


@pytest.mark.slow
def test_accuracy_and_history_on_postgresql(
    postgres_server: PostgresServer, make_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = postgres_server.create_database()
    try:
        monkeypatch.setenv("LEDGER_URL", postgres_server.url(name))
        settings = load_settings()
        built = build_store(settings.models_dir, settings.data_dir, refreshes=4, observed=140)
        assert record_and_score(settings, [built.series])
        client = make_client()
        body = client.get("/api/v1/accuracy", params={**QUERY, "window": "all"}).json()
        assert body["champion"] == "naive"
        assert {row["model"] for row in body["models"]} == {"naive", "drift"}
        history = client.get("/api/v1/forecasts/history", params={**QUERY, "as_of": "2100-01-01"})
        assert history.status_code == 200 and history.json()["model"] == "naive"
        client.app.state.ledger_holder.drop()  # release the connections before the drop
    finally:
        postgres_server.drop_database(name)
