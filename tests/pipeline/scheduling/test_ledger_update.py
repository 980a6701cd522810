"""The nightly cycle, the refresh and ``python -m pipeline`` record their issues in the ledger;
a ledger that cannot be reached is logged and counted and never fails them."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from pipeline import __main__ as cli
from pipeline.config import Settings, get_settings, load_settings
from pipeline.ledger.db import open_ledger
from pipeline.ledger.schema import issues
from pipeline.scheduling.cycle import default_stages, run_cycle
from pipeline.scheduling.history import read_history
from pipeline.scheduling.ledger_update import update_ledger
from pipeline.scheduling.metrics import METRICS_FILE
from pipeline.scheduling.refresh_job import run_refresh
from tests.helpers.cluster import FIXED_NOW, sample_ingest
from tests.helpers.scheduling import metric_samples

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/ledger"
pytestmark = pytest.mark.slow  # real ingest of the offline sample and real fits


def _sample_settings(**overrides: object) -> Settings:
    return load_settings(
        coins=["bitcoin"], frequencies=["1d"], history_days=60, stage_timeout_seconds=60,
        **overrides,
    )  # fmt: skip


def _recorded(settings: Settings) -> set[tuple[str, str]]:
    ledger = open_ledger(settings)
    try:
        with ledger.reader() as conn:
            rows = conn.execute(select(issues.c.series, issues.c.model)).all()
    finally:
        ledger.close()
    return {(r.series, r.model) for r in rows}


def _failures(settings: Settings) -> float:
    text = (Path(settings.models_dir) / METRICS_FILE).read_text()
    return metric_samples(text)[("ledger_update_failures_total", ())]


def test_a_cycle_records_its_issues_in_the_ledger() -> None:
    settings = _sample_settings()
    stages = replace(default_stages(), ingest=sample_ingest)
    record = run_cycle(settings, stages=stages, models=["naive", "drift"])
    assert record.status == "success", record
    assert record.ledger_recorded is True
    assert _recorded(settings) == {("bitcoin-usd-1d", "naive"), ("bitcoin-usd-1d", "drift")}
    assert read_history(settings)[-1]["ledger_recorded"] is True
    assert _failures(settings) == 0


def test_an_unreachable_ledger_is_logged_and_counted_and_the_cycle_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _sample_settings(ledger_url=UNREACHABLE)
    stages = replace(default_stages(), ingest=sample_ingest)
    with caplog.at_level(logging.ERROR):
        record = run_cycle(settings, stages=stages, models=["naive"])
    assert record.status == "success"
    assert [o.status for o in record.series] == ["promoted"]
    assert record.ledger_recorded is False
    assert any("forecast ledger not updated" in r.getMessage() for r in caplog.records)
    assert "127.0.0.1" in caplog.text  # the message names the database
    assert read_history(settings)[-1]["ledger_recorded"] is False
    assert _failures(settings) == 1


def test_update_ledger_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(ledger_url="not a url")
    with caplog.at_level(logging.ERROR):
        assert update_ledger(settings, settings.series()) is False
    assert "forecast ledger not updated" in caplog.text
    assert update_ledger(settings, []) is True  # nothing to record: nothing tried


def test_the_pipeline_run_records_its_issues() -> None:
    code = cli.main(
        ["--source", "sample", "--days", "40", "--freq", "1d", "--models", "naive,drift"]
    )
    assert code == 0
    assert _recorded(get_settings()) == {
        ("bitcoin-usd-1d", "naive"),
        ("bitcoin-usd-1d", "drift"),
    }


def test_a_refresh_catches_up_on_what_an_outage_missed() -> None:
    stages = replace(default_stages(), ingest=sample_ingest)
    run_cycle(_sample_settings(ledger_url=UNREACHABLE), stages=stages, models=["naive"])
    settings = _sample_settings()
    assert _recorded(settings) == set()
    record = run_refresh(settings, stages=stages, clock=lambda: FIXED_NOW)
    assert record.ledger_recorded is True
    assert _recorded(settings) == {("bitcoin-usd-1d", "naive")}
