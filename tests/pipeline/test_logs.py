"""Logging: JSON lines with context fields, readable text, configured once."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from pipeline.logs import JsonFormatter, TextFormatter, configure_logging


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
