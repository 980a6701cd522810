"""Logging: JSON lines with context fields, readable text, configured once."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from pipeline.config import get_settings, load_settings
from pipeline.logs import (
    JsonFormatter,
    RedactingFilter,
    TextFormatter,
    configure_logging,
    redact,
    redact_url,
    secret_values,
    url_secrets,
)


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _record(msg: str = "fetched %d rows", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.getLogger("pipeline.ingest").makeRecord(
        "pipeline.ingest", logging.WARNING, __file__, 1, msg, args or (3,), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_standard_and_context_fields() -> None:
    line = JsonFormatter().format(_record(coin="bitcoin", run_id="abc"))
    payload = json.loads(line)
    assert payload["level"] == "WARNING"
    assert payload["logger"] == "pipeline.ingest"
    assert payload["message"] == "fetched 3 rows"
    assert payload["coin"] == "bitcoin" and payload["run_id"] == "abc"
    assert payload["timestamp"].endswith("+00:00")  # UTC, timezone-aware
    assert "\n" not in line


def test_json_includes_the_traceback_of_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record()
        record.exc_info = sys.exc_info()
    payload = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in payload["exc_info"]


def test_text_format_is_readable_with_context() -> None:
    text = TextFormatter().format(_record(coin="bitcoin"))
    assert "WARNING" in text and "pipeline.ingest: fetched 3 rows" in text
    assert text.endswith("coin=bitcoin")


def test_configure_logging_replaces_handlers_and_picks_the_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    configure_logging("INFO", "json")  # configuring twice does not duplicate lines
    logging.getLogger("pipeline.test").info("hello", extra={"series": "bitcoin-usd-1d"})
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["series"] == "bitcoin-usd-1d"
    configure_logging("WARNING", "text")
    logging.getLogger("pipeline.test").info("quiet")
    logging.getLogger("pipeline.test").warning("loud")
    err = capsys.readouterr().err
    assert "quiet" not in err and "pipeline.test: loud" in err


def test_uvicorns_coloured_message_copy_is_left_out() -> None:
    payload = json.loads(JsonFormatter().format(_record(color_message="\x1b[36m%d\x1b[0m")))
    assert "color_message" not in payload


# -- redaction ------------------------------------------------------------------------------

SECRET = "fake-key-0123456789"
HOOK = "https://hooks.example.test/services/T0/B0/TOKEN-abcdef"


def _filtered(record: logging.LogRecord, *secrets: str) -> logging.LogRecord:
    assert RedactingFilter(secrets or (SECRET,)).filter(record) is True
    return record


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_known_secrets_are_masked_in_message_arguments_and_context(
    formatter: logging.Formatter,
) -> None:
    record = _filtered(_record("key %s in %s", SECRET, {"k": SECRET}, header=f"x={SECRET}"))
    line = formatter.format(record)
    assert SECRET not in line
    assert "key **** in {'k': '****'}" in line
    assert "x=****" in line


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_exception_traces_are_masked(formatter: logging.Formatter) -> None:
    try:
        raise RuntimeError(f"upstream said {SECRET}")
    except RuntimeError:
        import sys

        record = _record("failed after %d tries")
        record.exc_info = sys.exc_info()
    line = formatter.format(_filtered(record))
    assert SECRET not in line
    assert "RuntimeError: upstream said ****" in line


def test_a_secret_url_is_masked_whole_and_in_the_pieces_that_travel_alone() -> None:
    record = _filtered(
        _record("%s; %s", HOOK, "Max retries exceeded with url: /services/T0/B0/TOKEN-abcdef"),
        *url_secrets(HOOK),
    )
    assert record.getMessage() == "****; Max retries exceeded with url: ****"


def test_url_passwords_are_masked_without_knowing_them() -> None:
    text = "connect to postgresql://app:pa55w0rd@db:5432/prices and https://h.test/a@b"
    assert redact(text) == "connect to postgresql://app:****@db:5432/prices and https://h.test/a@b"
    assert _filtered(_record("url %s", "redis://:hunter22@cache:6379/0")).getMessage() == (
        "url redis://:****@cache:6379/0"
    )


def test_very_short_values_are_not_scrubbed_from_every_word() -> None:
    assert redact("a key of abc", ["abc", "k"]) == "a key of abc"
    assert redact("a key of abcd", ["abcd"]) == "a key of ****"


def test_a_secret_url_is_shown_as_scheme_and_host() -> None:
    assert redact_url(HOOK) == "https://hooks.example.test/****"
    assert redact_url("http://u:p@127.0.0.1:9/hook?t=1") == "http://127.0.0.1:9/****"
    assert redact_url("https://hooks.example.test") == "https://hooks.example.test"


def test_secret_values_are_the_secret_settings() -> None:
    settings = load_settings(
        api_key="api-key-1", admin_api_key="admin-key-2", alert_webhook_url=HOOK
    )
    assert secret_values(settings) == [
        "api-key-1",
        "admin-key-2",
        HOOK,
        "/services/T0/B0/TOKEN-abcdef",
    ]


def test_configure_logging_scrubs_the_configured_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COINGECKO_API_KEY", SECRET)
    get_settings.cache_clear()
    configure_logging("INFO", "json")
    log = logging.getLogger("pipeline.test")
    log.info("sent %s", SECRET, extra={"url": f"https://u:{SECRET}@h.test"})
    try:
        raise ValueError(SECRET)
    except ValueError:
        log.exception("boom")
    configure_logging("INFO", "text", secrets=["other-secret"])
    log.warning("%s and other-secret", SECRET)
    err = capsys.readouterr().err
    first, second, third = err.strip().splitlines()[:2] + err.strip().splitlines()[-1:]
    assert json.loads(first)["message"] == "sent ****"
    assert json.loads(first)["url"] == "https://u:****@h.test"
    assert json.loads(second)["exc_info"].endswith("ValueError: ****")
    assert third.endswith(f"pipeline.test: {SECRET} and ****")  # only the given secrets now
