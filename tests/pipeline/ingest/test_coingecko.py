"""CoinGecko ingest against a real local imitation server (tests/fakes/coingecko.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import get_settings
from pipeline.errors import DataValidationError, IngestError, SourceUnavailableError
from pipeline.ingest import cli, ingest_series, raw_path, read_meta, read_raw
from pipeline.ingest.coingecko import parse_retry_after
from pipeline.series import SeriesId
from tests.helpers.coingecko import FakeCoinGecko

BTC_1H = SeriesId("bitcoin", "usd", "1h")
BTC_1D = SeriesId("bitcoin", "usd", "1d")


def _seed_raw(series: SeriesId = BTC_1H, days: int = 3) -> tuple[Path, bytes, bytes]:
    """A first successful ingest; returns the raw path and the bytes of the CSV and meta."""
    result = ingest_series(series, get_settings(), source="coingecko", days=days)
    meta = result.path.with_name(f"{series.name}.meta.json")
    return result.path, result.path.read_bytes(), meta.read_bytes()


def _assert_unchanged(path: Path, csv_bytes: bytes, meta_bytes: bytes) -> None:
    assert path.read_bytes() == csv_bytes
    assert path.with_name(path.stem + ".meta.json").read_bytes() == meta_bytes
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_first_hourly_ingest_writes_sorted_unique_rows_and_meta(fake_coingecko: FakeCoinGecko):
    result = ingest_series(BTC_1H, get_settings(), source="coingecko", days=3)

    frame = read_raw(result.path)
    assert result.path == raw_path(get_settings().data_dir, BTC_1H)
    assert result.source_used == "coingecko"
    assert 72 <= len(frame) <= 74
    assert frame["ds"].is_monotonic_increasing and frame["ds"].is_unique
    assert (frame["ds"].dt.minute == 0).all() and (frame["ds"].dt.second == 0).all()
    assert frame["market_cap"].notna().all() and frame["volume"].notna().all()
    lines = result.path.read_text().splitlines()
    assert lines[0] == "ds,price,market_cap,volume"
    assert re.fullmatch(r"20\d\d-\d\d-\d\dT\d\d:00:00Z,[0-9.]+,[0-9.e+]+,[0-9.e+]+", lines[1])
    meta = read_meta(result.path)
    assert meta is not None
    assert meta["source"] == "coingecko" and meta["simulated"] is False
    assert meta["rows"] == len(frame) and meta["gap_count"] == 0
    assert meta["sha256"] == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert meta["last_ds"] == frame["ds"].iloc[-1].strftime("%Y-%m-%dT%H:%M:%SZ")


def test_hourly_history_is_fetched_in_windows_of_at_most_90_days(
    fake_coingecko: FakeCoinGecko, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("COINGECKO_API_KEY", "demo-key")
    get_settings.cache_clear()
    result = ingest_series(BTC_1H, get_settings(), source="coingecko", days=200)

    calls = fake_coingecko.chart_requests()
    assert len(calls) == 3
    spans = [int(c.params["to"]) - int(c.params["from"]) for c in calls]
    assert max(spans) <= 90 * 86400
    assert all(c.path.endswith("/market_chart/range") for c in calls)
    frame = read_raw(result.path)
    # hourly all along: CoinGecko would have answered a longer range with daily points
    assert (frame["ds"].diff().dropna() == pd.Timedelta("1h")).all()
    assert len(frame) >= 200 * 24


def test_daily_history_is_one_call_with_00utc_rows(fake_coingecko: FakeCoinGecko):
    result = ingest_series(BTC_1D, get_settings(), source="coingecko", days=120)

    assert len(fake_coingecko.chart_requests()) == 1
    frame = read_raw(result.path)
    assert (frame["ds"] == frame["ds"].dt.normalize()).all()
    assert frame["ds"].is_unique and 120 <= len(frame) <= 122


@pytest.mark.parametrize(
    ("plan_env", "base_suffix", "header"),
    [
        ({}, "", "x-cg-demo-api-key"),
        ({"COINGECKO_API_PLAN": "pro"}, "", "x-cg-pro-api-key"),
    ],
)
def test_api_key_is_sent_in_the_plan_header(
    fake_coingecko: FakeCoinGecko,
    monkeypatch: pytest.MonkeyPatch,
    plan_env: dict[str, str],
    base_suffix: str,
    header: str,
):
    monkeypatch.setenv("COINGECKO_API_KEY", "secret-123")
    for key, value in plan_env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    ingest_series(BTC_1D, get_settings(), source="coingecko", days=5)

    seen = fake_coingecko.chart_requests()[0].headers
    assert seen[header] == "secret-123"
    other = {"x-cg-demo-api-key", "x-cg-pro-api-key"} - {header}
    assert not other & set(seen)


def test_pro_plan_is_chosen_from_a_pro_api_base_url():
    from pipeline.config import load_settings
    from pipeline.ingest.coingecko import CoinGeckoClient

    settings = load_settings(
        coingecko_base_url="https://pro-api.coingecko.com/api/v3", coingecko_api_key="k"
    )
    client = CoinGeckoClient(settings)
    assert client.key_header == "x-cg-pro-api-key"
    assert client.session.headers["x-cg-pro-api-key"] == "k"


# -- retries -------------------------------------------------------------------------------


def test_429_twice_then_200_succeeds_and_logs_each_retry(
    fake_coingecko: FakeCoinGecko, caplog: pytest.LogCaptureFixture
):
    fake_coingecko.faults = ["429", "429"]
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.coingecko"):
        result = ingest_series(BTC_1D, get_settings(), source="coingecko", days=10)

    assert result.rows_total >= 10
    assert len(fake_coingecko.chart_requests()) == 3
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and all("429" in r.getMessage() for r in retries)


def test_retry_after_is_honoured(fake_coingecko: FakeCoinGecko):
    fake_coingecko.faults = ["429-retry-after"]
    fake_coingecko.retry_after = "1"
    started = time.monotonic()
    ingest_series(BTC_1D, get_settings(), source="coingecko", days=10)

    assert time.monotonic() - started >= 1.0  # waited what the server asked, not 0.01 s
    assert len(fake_coingecko.chart_requests()) == 2


def test_retry_after_beyond_the_budget_gives_up_at_once_with_the_fix(
    fake_coingecko: FakeCoinGecko,
):
    fake_coingecko.always = "429-retry-after"
    fake_coingecko.retry_after = "3600"
    with pytest.raises(IngestError, match=r"Retry-After.*HTTP_RETRY_BUDGET.*COINGECKO_API_KEY"):
        ingest_series(BTC_1D, get_settings(), source="coingecko", days=10)
    assert len(fake_coingecko.chart_requests()) == 1


def test_parse_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 <= (parse_retry_after(later) or 0) <= 31


@pytest.mark.parametrize("fault", ["500", "503"])
def test_5xx_is_retried_then_succeeds(fake_coingecko: FakeCoinGecko, fault: str):
    fake_coingecko.faults = [fault]
    result = ingest_series(BTC_1D, get_settings(), source="coingecko", days=10)
    assert result.rows_added > 0
    assert len(fake_coingecko.chart_requests()) == 2


def test_attempts_are_bounded_by_http_max_attempts(
    fake_coingecko: FakeCoinGecko, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HTTP_MAX_ATTEMPTS", "3")
    get_settings.cache_clear()
    fake_coingecko.always = "503"
    with pytest.raises(IngestError, match=r"HTTP 503 after 3 attempt"):
        ingest_series(BTC_1D, get_settings(), source="coingecko", days=10)
    assert len(fake_coingecko.chart_requests()) == 3


def test_always_500_exits_1_within_the_retry_budget_and_leaves_the_raw_file_unchanged(
    fake_coingecko: FakeCoinGecko, monkeypatch: pytest.MonkeyPatch, capsys
):
    path, csv_bytes, meta_bytes = _seed_raw()
    monkeypatch.setenv("HTTP_MAX_ATTEMPTS", "20")
    monkeypatch.setenv("HTTP_RETRY_BUDGET", "1.0")
    monkeypatch.setenv("HTTP_BACKOFF_INITIAL", "0.1")
    monkeypatch.setenv("HTTP_BACKOFF_MAX", "0.2")
    get_settings.cache_clear()
    fake_coingecko.always = "500"
    before = len(fake_coingecko.chart_requests())

    started = time.monotonic()
    code = cli.main(["--source", "coingecko", "--coin", "bitcoin", "--freq", "1h"])
    elapsed = time.monotonic() - started

    assert code == 1
    # the budget stopped it (attempt count below); generous slack keeps a loaded CI box green
    assert elapsed < 1.0 + 5.0
    attempts = len(fake_coingecko.chart_requests()) - before
    assert 2 <= attempts < 20  # the budget stopped it, not the attempt limit
    _assert_unchanged(path, csv_bytes, meta_bytes)
    assert "bitcoin-usd-1h: FAILED" in capsys.readouterr().out


def test_hang_past_the_read_timeout_is_retried_then_reported_unreachable(
    fake_coingecko: FakeCoinGecko, monkeypatch: pytest.MonkeyPatch
):
    path, csv_bytes, meta_bytes = _seed_raw()
    monkeypatch.setenv("HTTP_READ_TIMEOUT", "0.3")
    monkeypatch.setenv("HTTP_MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    fake_coingecko.always = "hang"
    fake_coingecko.hang_seconds = 2.0
    with pytest.raises(SourceUnavailableError, match=r"timed out after 2 attempt"):
        ingest_series(BTC_1H, get_settings(), source="coingecko")
    _assert_unchanged(path, csv_bytes, meta_bytes)


def test_hang_once_then_answer_succeeds(
    fake_coingecko: FakeCoinGecko, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setenv("HTTP_READ_TIMEOUT", "0.3")
    get_settings.cache_clear()
    fake_coingecko.faults = ["hang"]
    fake_coingecko.hang_seconds = 5.0  # far beyond the read timeout: only the timeout ends it
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.coingecko"):
        result = ingest_series(BTC_1D, get_settings(), source="coingecko", days=10)
    assert result.rows_added > 0
    # The hanging request was abandoned at the configured read timeout and asked again.
    assert len(fake_coingecko.chart_requests()) == 2
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 1
    assert re.search(
        r"CoinGecko request failed \(.*Read timed out\. \(read timeout=0\.3\)\)", retries[0]
    )


# -- bodies and rules that fail cleanly (no retry) -------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("truncated", IngestError, r"malformed JSON .*truncated"),
        ("html", IngestError, r"HTML page .*instead of JSON"),
        ("365-day", IngestError, r"365 days.*--days.*COINGECKO_API_KEY"),
        ("404", IngestError, r"does not know coin id 'bitcoin'"),
        ("negative", DataValidationError, r"bitcoin-usd-1h.*zero or negative price.*-\d"),
        ("null-price", DataValidationError, r"missing \(NaN\) price"),
        ("string-price", DataValidationError, r"non-numeric price 'n/a' at 20\d\d-"),
        ("conflicting-duplicate", DataValidationError, r"unresolvable ordering"),
    ],
)
def test_bad_answers_fail_without_retry_and_leave_the_raw_file_unchanged(
    fake_coingecko: FakeCoinGecko, fault: str, error: type[Exception], message: str
):
    path, csv_bytes, meta_bytes = _seed_raw()
    before = len(fake_coingecko.chart_requests())
    fake_coingecko.always = fault

    with pytest.raises(error, match=message):
        ingest_series(BTC_1H, get_settings(), source="coingecko")

    assert len(fake_coingecko.chart_requests()) == before + 1  # not retried
    _assert_unchanged(path, csv_bytes, meta_bytes)


def test_bad_answer_exits_1_from_the_cli(fake_coingecko: FakeCoinGecko, capsys):
    fake_coingecko.always = "html"
    assert cli.main(["--source", "coingecko", "--freq", "1d", "--days", "5"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert not raw_path(get_settings().data_dir, BTC_1D).exists()


def test_keyless_request_beyond_365_days_explains_the_fix(fake_coingecko: FakeCoinGecko):
    with pytest.raises(IngestError, match=r"error_code 10012.*shorten --days to 365"):
        ingest_series(BTC_1D, get_settings(), source="coingecko", days=400)


@pytest.mark.parametrize("fault", ["out-of-order", "duplicate"])
def test_out_of_order_and_exact_duplicate_points_are_resolved(
    fake_coingecko: FakeCoinGecko, fault: str
):
    fake_coingecko.always = fault
    result = ingest_series(BTC_1H, get_settings(), source="coingecko", days=3)
    frame = read_raw(result.path)
    assert frame["ds"].is_monotonic_increasing and frame["ds"].is_unique
    assert 72 <= len(frame) <= 74


def test_a_big_one_step_jump_is_kept_and_flagged(
    fake_coingecko: FakeCoinGecko, caplog: pytest.LogCaptureFixture
):
    fake_coingecko.always = "jump"
    with caplog.at_level(logging.WARNING):
        result = ingest_series(BTC_1H, get_settings(), source="coingecko", days=3)

    frame = read_raw(result.path)
    meta = read_meta(result.path) or {}
    assert meta["flag_count"] == 1  # up x3 (+200%) is flagged; back down (-67%) is not
    assert meta["flags"][0]["rule"] == "max_jump" and meta["flags"][0]["change"] > 1.9
    assert pd.Timestamp(meta["flags"][0]["ds"]) in set(frame["ds"])  # not dropped
    assert any("MAX_JUMP" in r.getMessage() for r in caplog.records)


# -- incremental ---------------------------------------------------------------------------


def test_second_run_fetches_only_new_points_and_keeps_every_row(fake_coingecko: FakeCoinGecko):
    first_now = datetime.now(UTC) - timedelta(days=2)
    first = ingest_series(BTC_1H, get_settings(), source="coingecko", days=5, now=first_now)
    before = read_raw(first.path)
    last_stored = before["ds"].iloc[-1]
    calls_before = len(fake_coingecko.chart_requests())

    second = ingest_series(BTC_1H, get_settings(), source="coingecko")

    calls = fake_coingecko.chart_requests()[calls_before:]
    assert len(calls) == 1
    assert int(calls[0].params["from"]) >= last_stored.timestamp()
    after = read_raw(second.path)
    assert set(before["ds"]) <= set(after["ds"])  # nothing lost
    assert 47 <= second.rows_added <= 50
    assert len(after) == len(before) + second.rows_added
    meta = read_meta(second.path) or {}
    assert meta["last_fetch"]["incremental"] is True


def test_incremental_daily_run(fake_coingecko: FakeCoinGecko):
    now = datetime.now(UTC)
    first = ingest_series(
        BTC_1D,
        get_settings(),
        source="coingecko",
        since=now - timedelta(days=34),
        now=now - timedelta(days=4),
    )
    second = ingest_series(BTC_1D, get_settings(), source="coingecko")
    frame = read_raw(second.path)
    assert frame["ds"].is_unique and (frame["ds"] == frame["ds"].dt.normalize()).all()
    assert second.rows_total == first.rows_total + second.rows_added
    assert 3 <= second.rows_added <= 5


# -- auto and multi-coin -------------------------------------------------------------------


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v3"


def test_auto_falls_back_to_the_sample_when_coingecko_is_unreachable(
    capsys, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.WARNING):
        code = cli.main(
            ["--source", "auto", "--base-url", _closed_port_url(), "--freq", "1d", "--days", "60"]
        )

    assert code == 0
    path = raw_path(get_settings().data_dir, BTC_1D)
    meta = read_meta(path) or {}
    assert meta["source"] == "sample" and meta["simulated"] is True
    assert (
        meta["requested_source"] == "auto"
        and "unreachable" in meta["last_fetch"]["fallback_reason"]
    )
    assert len(read_raw(path)) == 60
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("unreachable" in w and "SIMULATED" in w for w in warnings)
    assert "source sample" in capsys.readouterr().out


def test_auto_does_not_fall_back_on_http_errors(fake_coingecko: FakeCoinGecko):
    fake_coingecko.always = "500"
    with pytest.raises(IngestError, match="HTTP 500"):
        ingest_series(BTC_1D, get_settings(), source="auto", days=10)
    assert not raw_path(get_settings().data_dir, BTC_1D).exists()


def test_auto_offline_keeps_existing_real_data(
    fake_coingecko: FakeCoinGecko, monkeypatch: pytest.MonkeyPatch
):
    path, csv_bytes, meta_bytes = _seed_raw()
    monkeypatch.setenv("COINGECKO_BASE_URL", _closed_port_url())
    get_settings.cache_clear()
    result = ingest_series(BTC_1H, get_settings(), source="auto")
    assert result.source_used == "none" and "kept existing" in result.note
    _assert_unchanged(path, csv_bytes, meta_bytes)


def test_real_data_replaces_a_simulated_file(fake_coingecko: FakeCoinGecko):
    ingest_series(BTC_1D, get_settings(), source="sample", days=50)
    result = ingest_series(BTC_1D, get_settings(), source="coingecko", days=10)
    meta = read_meta(result.path) or {}
    assert meta["simulated"] is False and meta["source"] == "coingecko"
    assert 10 <= result.rows_total <= 12  # the simulated rows are gone, not mixed in


def test_multi_coin_continues_past_one_failure(fake_coingecko: FakeCoinGecko, capsys):
    code = cli.main(
        ["--source", "coingecko", "--coin", "nosuchcoin,bitcoin", "--freq", "1d", "--days", "5"]
    )

    out = capsys.readouterr().out
    assert code == 1
    assert "nosuchcoin-usd-1d: FAILED" in out and "does not know coin id" in out
    assert "bitcoin-usd-1d: ok" in out
    assert raw_path(get_settings().data_dir, BTC_1D).exists()


def test_meta_json_is_valid_json_with_the_agreed_fields(fake_coingecko: FakeCoinGecko):
    before = datetime.now(UTC).replace(microsecond=0)
    result = ingest_series(BTC_1D, get_settings(), source="coingecko", days=10)
    after = datetime.now(UTC)
    meta = json.loads(result.path.with_name("bitcoin-usd-1d.meta.json").read_text())
    frame = read_raw(result.path)

    assert meta["schema_version"] == 1
    assert (meta["series"], meta["coin"], meta["vs"], meta["freq"]) == (
        "bitcoin-usd-1d", "bitcoin", "usd", "1d",
    )  # fmt: skip
    assert (meta["source"], meta["requested_source"], meta["simulated"]) == (
        "coingecko", "coingecko", False,
    )  # fmt: skip
    ingested = datetime.fromisoformat(meta["last_ingest_at"])
    assert ingested.tzinfo is not None and before <= ingested <= after
    assert meta["rows"] == len(frame) == result.rows_total
    assert meta["first_ds"] == frame["ds"].iloc[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert meta["last_ds"] == frame["ds"].iloc[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (meta["gap_count"], meta["gaps"]) == (0, [])  # the fake's daily series is complete
    assert (meta["flag_count"], meta["flags"]) == (0, [])
    assert meta["sha256"] == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert meta["last_fetch"]["added"] == result.rows_added == len(frame)
