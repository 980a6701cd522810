"""Telling the API to reload and posting alerts: best effort, bounded, never raising."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline.config import Settings, load_settings
from pipeline.scheduling.history import CycleRecord, SeriesOutcome
from pipeline.scheduling.notify import ALERT_ATTEMPTS, alert_if_needed, notify_api
from tests.helpers.processes import free_port


def failed_record(*outcomes: SeriesOutcome) -> CycleRecord:
    record = CycleRecord(run_id="r1", started_at="2026-11-21T02:00:00+00:00")
    record.series.extend(outcomes)
    record.conclude()
    return record


def test_alert_lists_failed_and_rejected_series(settings: Settings, recorder: Any) -> None:
    url, handler = recorder
    hooked = settings.model_copy(update={"alert_webhook_url": SecretStr(url + "/hook")})
    record = failed_record(
        SeriesOutcome("bitcoin-usd-1d", "failed", "ingest: HTTP 503"),
        SeriesOutcome("bitcoin-usd-1h", "promoted", "passed"),
        SeriesOutcome("ethereum-usd-1d", "rejected", "quality gate failed: x"),
    )
    alert_if_needed(hooked, record)
    ((path, headers, body),) = handler.received
    assert path == "/hook" and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "source": "retrain_scheduler",
        "run_id": "r1",
        "status": "partial",
        "problems": [
            {"series": "bitcoin-usd-1d", "status": "failed", "reason": "ingest: HTTP 503"},
            {"series": "ethereum-usd-1d", "status": "rejected", "reason": "quality gate failed: x"},
        ],
    }


def test_no_alert_when_all_went_well_or_no_webhook(settings: Settings, recorder: Any) -> None:
    url, handler = recorder
    fine = failed_record(SeriesOutcome("bitcoin-usd-1d", "promoted", "passed"))
    alert_if_needed(settings.model_copy(update={"alert_webhook_url": SecretStr(url)}), fine)
    alert_if_needed(settings, failed_record(SeriesOutcome("bitcoin-usd-1d", "failed", "boom")))
    assert handler.received == []


def test_alert_webhook_failure_is_retried_and_never_raises(
    settings: Settings, recorder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url, handler = recorder
    handler.status = 500
    hook = SecretStr(url + "/hook/TOKEN-500")
    hooked = settings.model_copy(update={"alert_webhook_url": hook, "http_backoff_initial": 0.0})
    alert_if_needed(hooked, failed_record(SeriesOutcome("bitcoin-usd-1d", "failed", "boom")))
    assert len(handler.received) == ALERT_ATTEMPTS == 3
    assert handler.received[0][0] == "/hook/TOKEN-500"  # the real URL was used
    # requests quotes the URL ("... for url: http://..."): the message keeps only its host.
    assert (
        f"alert webhook failed after retries: 500 Server Error: Internal Server Error for url: ****"
        f" ({url}/****)" in caplog.text
    )
    assert "TOKEN-500" not in caplog.text


def test_an_unreachable_webhook_is_logged_without_its_token(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    hook = SecretStr(f"{base}/hook/SECRET-TOKEN-123?sig=abc")
    hooked = settings.model_copy(update={"alert_webhook_url": hook, "http_backoff_initial": 0.0})
    alert_if_needed(hooked, failed_record(SeriesOutcome("bitcoin-usd-1d", "failed", "boom")))
    (message,) = [r.getMessage() for r in caplog.records if "alert webhook" in r.getMessage()]
    assert message.startswith("alert webhook failed after retries: HTTPConnectionPool(")
    assert message.endswith(f"({base}/****)")
    assert "Max retries exceeded with url: ****" in message
    assert "SECRET-TOKEN-123" not in caplog.text and "sig=abc" not in caplog.text


def test_reload_is_skipped_without_api_url_or_admin_key(recorder: Any) -> None:
    url, handler = recorder
    assert notify_api(load_settings(api_url=url)) is None
    assert notify_api(load_settings(admin_api_key="k")) is None
    assert handler.received == []


def test_reload_sends_the_admin_key(recorder: Any) -> None:
    url, handler = recorder
    assert notify_api(load_settings(api_url=url + "/", admin_api_key="s3cret")) is True
    ((path, headers, _),) = handler.received
    assert path == "/model/reload"
    assert headers["X-Admin-Key"] == "s3cret"


def test_reload_refused_is_false(recorder: Any, caplog: pytest.LogCaptureFixture) -> None:
    url, handler = recorder
    handler.status = 401
    assert notify_api(load_settings(api_url=url, admin_api_key="wrong")) is False
    assert "API reload answered 401" in caplog.text


def test_reload_with_the_api_down_is_false(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert notify_api(load_settings(api_url=url, admin_api_key="k")) is False
    assert f"could not ask the API to reload ({url}/model/reload)" in caplog.text
