"""The trust block of the predict answers, from a real SQLite ledger filled by recording and
scoring (the ledger's own functions), read by the API's background cache."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.api.schemas import BatchResponse, PredictResponse
from pipeline.config import Settings, load_settings
from pipeline.ledger.db import LEDGER_FILE, open_ledger
from pipeline.ledger.read import trust_summary
from pipeline.ledger.record import IssueEntry, record
from pipeline.ledger.score import score
from tests.helpers.ledger import DAILY, synthetic_entries
from tests.helpers.serving import FrozenClock, Metas, TestClient, build_models, metric_samples

Client = Callable[..., TestClient]
#: Where the ledger's issues start: 48 daily steps, all before the test models' ORIGIN.
LEDGER_ORIGIN = pd.Timestamp("2026-09-01", tz="UTC")
STEPS = 48
#: The matured points of the 48 inside the default TRUST_WINDOW (30d, ending at the newest).
IN_WINDOW = 30


def _entries(drift_band: float) -> list[IssueEntry]:
    """naive (the champion) and drift issued once from LEDGER_ORIGIN around 100; drift's bands
    are naive's widened by 10% and scaled by ``drift_band``."""
    naive, other = synthetic_entries(DAILY, 2, STEPS, LEDGER_ORIGIN)
    frame = other.info.forecast.copy()
    for col in ("lower_80", "upper_80", "lower_95", "upper_95"):
        frame[col] = 100 + (frame[col] - 100) * drift_band
    drift = IssueEntry(
        replace(other.info, record=other.info.record.model_copy(update={"model": "drift"}),
                forecast=frame),
        False, other.model_sha256,
    )  # fmt: skip
    return [naive, drift]


def _prices(matured: int) -> pd.Series:
    """60 days before LEDGER_ORIGIN, then ``matured`` days close to 100 (inside naive's bands)."""
    rng = np.random.default_rng(7)
    before = pd.date_range(LEDGER_ORIGIN - pd.Timedelta(days=60), LEDGER_ORIGIN, freq="D")
    after = pd.date_range(LEDGER_ORIGIN + pd.Timedelta(days=1), periods=matured, freq="D")
    return pd.concat(
        [
            pd.Series(100 + np.cumsum(rng.normal(0, 1, len(before))), index=before),
            pd.Series(100 + rng.normal(0, 0.2, len(after)), index=after),
        ]
    )


def _fill(settings: Settings, *, matured: int = STEPS, drift_band: float = 1.0) -> None:
    ledger = open_ledger(settings)
    try:
        record(ledger, _entries(drift_band))
        score(ledger, settings, [DAILY], prices={DAILY.name: _prices(matured)})
    finally:
        ledger.close()


def _trust(client: TestClient, model: str = "champion", **body: object) -> dict:
    response = client.post("/api/v1/predict", json={"timeframe": "1d", "model": model, **body})
    assert response.status_code == 200, response.text
    PredictResponse.model_validate(response.json())
    trust = response.json()["trust"]
    assert isinstance(trust, dict)
    return trust


def _failures(client: TestClient) -> float:
    samples = metric_samples(client.get("/metrics").text, "ledger_read_failures_total")
    return sum(value for _, value in samples)


def _ledger_path(settings: Settings) -> Path:
    return Path(settings.models_dir) / LEDGER_FILE


def test_ok_and_degraded_match_the_ledger_summaries(metas: Metas, make_client: Client) -> None:
    settings = load_settings()
    _fill(settings, drift_band=0.01)  # drift's bands hold almost nothing
    client = make_client()
    naive = _trust(client, "naive")
    assert naive["status"] == "ok" and naive["window"] == "30d"
    assert naive["matured_points"] == IN_WINDOW and naive["coverage_95"] == 1.0
    assert naive["wis_ratio"] == pytest.approx(1.0)
    drift = _trust(client)  # the champion of the served models
    expected = trust_summary(open_ledger(settings), DAILY.name, "drift", settings)
    assert drift["status"] == "degraded" == expected.status
    assert drift["reason"] == expected.reason and "coverage" in drift["reason"]
    assert drift["matured_points"] == expected.n == IN_WINDOW
    assert drift["coverage_95"] == pytest.approx(expected.coverage_95, abs=1e-4)
    assert drift["wis_ratio"] == pytest.approx(expected.wis_ratio, rel=1e-3)
    assert drift["coverage_95"] < 0.5  # degraded by coverage, although its WIS is lower
    assert _failures(client) == 0


def test_too_few_matured_points_is_unknown(metas: Metas, make_client: Client) -> None:
    _fill(load_settings(), matured=10)
    trust = _trust(make_client())
    assert trust["status"] == "unknown" and trust["matured_points"] == 10
    assert trust["reason"] == "10 matured point(s), 30 needed"
    assert trust["coverage_95"] is not None  # the figures are shown, the status withheld


def test_a_model_the_ledger_never_recorded_is_unknown(metas: Metas, make_client: Client) -> None:
    _fill(load_settings())
    client = make_client()
    hourly = client.post("/api/v1/predict", json={"timeframe": "1h"}).json()["trust"]
    assert hourly["status"] == "unknown" and hourly["matured_points"] == 0
    assert hourly["coverage_95"] is None and hourly["wis_ratio"] is None


def test_the_ages_are_computed_at_the_time_of_the_answer(
    models_dir: Path, make_client: Client, clock: FrozenClock
) -> None:
    metas = build_models(models_dir, end=None)  # paths from the current period: never expired
    client = make_client()
    meta = metas[f"{DAILY.name}/drift"]
    clock.set(meta.created_at + timedelta(seconds=125))
    body = client.post("/api/v1/predict", json={"timeframe": "1d"}).json()
    issued = pd.Timestamp(body["freshness"]["issued_at"])
    origin = pd.Timestamp(body["freshness"]["origin"])
    now = int(clock.now.timestamp())
    assert body["trust"]["issue_age_seconds"] == now - int(issued.timestamp())
    assert 124 <= body["trust"]["issue_age_seconds"] <= 126
    assert body["trust"]["data_age_seconds"] == now - int(origin.timestamp())
    assert body["trust"]["data_age_seconds"] == body["freshness"]["age_seconds"]


def test_batch_items_and_fallbacks_carry_trust(metas: Metas, make_client: Client) -> None:
    _fill(load_settings(), drift_band=0.01)
    client = make_client()
    batch = client.post(
        "/api/v1/predict/batch",
        json={"requests": [{"timeframe": "1d"}, {"timeframe": "1d", "model": "naive"}]},
    )
    items = BatchResponse.model_validate(batch.json()).results
    assert [item.result.trust.status for item in items if item.result and item.result.trust] == [
        "degraded",
        "ok",
    ]
    # A missing model falls back to the champion: the champion's own trust.
    champion = _trust(client, "prophet", fallback=True)
    assert champion["status"] == "degraded"
    # 4h is derived from the 1h champion's path, which the ledger never scored as 4h.
    derived = client.post("/api/v1/predict", json={"timeframe": "4h", "fallback": True}).json()
    assert derived["fallback"]["strategy"] == "derived_timeframe"
    assert derived["trust"]["status"] == "unknown" and "derived" in derived["trust"]["reason"]


def test_the_block_can_be_turned_off(metas: Metas, make_client: Client) -> None:
    _fill(load_settings())
    client = make_client(TRUST_IN_PREDICTIONS="false")
    body = client.post("/api/v1/predict", json={"timeframe": "1d"}).json()
    assert body["trust"] is None
    PredictResponse.model_validate(body)


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _garble(path: Path) -> None:
    _remove(path)
    path.write_bytes(b"this is not an SQLite database" * 100)


@pytest.mark.parametrize("break_it", [_remove, _garble], ids=["removed", "unreadable"])
def test_a_broken_ledger_is_unknown_counted_and_predictions_still_served(
    metas: Metas, make_client: Client, break_it: Callable[[Path], None]
) -> None:
    settings = load_settings()
    _fill(settings)
    client = make_client(TRUST_REFRESH_SECONDS="0")
    cache = client.app.state.runtime.trust
    assert _trust(client)["status"] == "ok"
    break_it(_ledger_path(settings))
    assert cache.refresh() is False
    trust = _trust(client)
    assert trust["status"] == "unknown" and "cannot be read" in trust["reason"]
    assert trust["matured_points"] == 0 and trust["data_age_seconds"] == 0
    assert _failures(client) == 1
    assert cache.refresh() is False and _failures(client) == 2  # counted per refresh
    _remove(_ledger_path(settings))
    _fill(settings)  # the ledger is back: the next refresh reads it again
    assert cache.refresh() is True
    assert _trust(client)["status"] == "ok" and _failures(client) == 2


def test_a_locked_ledger_is_unknown_and_the_outage_is_logged_once(
    metas: Metas, make_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings()
    _fill(settings)
    client = make_client(TRUST_REFRESH_SECONDS="0", LEDGER_BUSY_TIMEOUT_SECONDS="0.2")
    cache = client.app.state.runtime.trust
    locker = sqlite3.connect(_ledger_path(settings), isolation_level=None)
    try:
        locker.execute("PRAGMA locking_mode=EXCLUSIVE")
        locker.execute("BEGIN EXCLUSIVE")
        with caplog.at_level(logging.INFO, logger="pipeline.api.trust"):
            assert cache.refresh() is False
            assert cache.refresh() is False
            assert _trust(client)["status"] == "unknown"
            assert client.post("/api/v1/predict", json={"timeframe": "1h"}).status_code == 200
            locker.execute("ROLLBACK")
            locker.close()
            assert cache.refresh() is True
    finally:
        locker.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "database is locked" in warnings[0].getMessage()
    assert any("readable again" in r.getMessage() for r in caplog.records)
    assert _failures(client) == 2
    assert _trust(client)["status"] == "ok"


def test_an_unreachable_database_serves_unknown_from_the_start(
    metas: Metas, make_client: Client
) -> None:
    client = make_client(LEDGER_URL="postgresql://nobody@127.0.0.1:1/ledger")
    trust = _trust(client)
    assert trust["status"] == "unknown" and "cannot be read" in trust["reason"]
    assert _failures(client) >= 1
    assert not _ledger_path(load_settings()).exists()


def test_a_missing_ledger_file_is_never_created(metas: Metas, make_client: Client) -> None:
    client = make_client()
    assert _trust(client)["status"] == "unknown"
    assert not _ledger_path(load_settings()).exists()
    assert not os.path.exists(f"{_ledger_path(load_settings())}.lock")


def test_a_refresh_picks_up_new_scores(metas: Metas, make_client: Client) -> None:
    settings = load_settings()
    _fill(settings, matured=10)
    client = make_client(TRUST_REFRESH_SECONDS="0")
    assert _trust(client)["matured_points"] == 10
    _fill(settings)  # the same issues, 38 more days of prices scored
    assert _trust(client)["matured_points"] == 10  # a request only reads the cache
    assert client.app.state.runtime.trust.refresh() is True
    trust = _trust(client)
    assert trust["matured_points"] == IN_WINDOW and trust["status"] == "ok"


def test_the_background_refresh_picks_up_new_scores(metas: Metas, make_client: Client) -> None:
    settings = load_settings()
    _fill(settings, matured=10)
    client = make_client(TRUST_REFRESH_SECONDS="0.05")
    assert _trust(client)["status"] == "unknown"
    _fill(settings)
    deadline = time.monotonic() + 30
    while _trust(client)["status"] != "ok":  # bounded poll: the refresh runs in the background
        assert time.monotonic() < deadline, "the background refresh never picked up the scores"
        time.sleep(0.05)
    assert _trust(client)["matured_points"] == IN_WINDOW
