"""Faults with real processes: kill -9 mid-write, one writer beside two readers, no database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from pipeline.config import get_settings
from pipeline.ledger.db import open_ledger
from pipeline.ledger.hooks import record_and_score
from pipeline.ledger.record import sync
from pipeline.ledger.schema import issues, steps
from tests.helpers.ledger import build_store
from tests.helpers.paths import ROOT
from tests.helpers.processes import free_port

pytestmark = pytest.mark.slow

# Records every issue of the store in one transaction, says so, and waits to be killed before
# it commits.
KILLED_WRITER = """
import sys, time
from pipeline.artifacts.store import ArtifactStore
from pipeline.ledger.db import open_ledger
from pipeline.ledger.record import pending_entries, record_issues
from pipeline.series import SeriesId

ledger = open_ledger(url=sys.argv[1])
store = ArtifactStore(sys.argv[2])
entries = pending_entries(store, SeriesId.parse("bitcoin-usd-1d"), set(), [])
with ledger.writer() as conn:
    record_issues(conn, entries)
    sys.stdout.write("written\\n")
    sys.stdout.flush()
    time.sleep(600)
"""

# 15 transactions of 10 issues x 48 steps, each followed by a scoring pass that refreshes the
# aggregates; then "done".
WRITER = """
import sys
from datetime import UTC, datetime
import numpy as np, pandas as pd
from pipeline.ledger.db import open_ledger
from pipeline.ledger.record import record
from pipeline.ledger.score import score_series
from pipeline.series import SeriesId
from tests.helpers.ledger import synthetic_entries

ledger = open_ledger(url=sys.argv[1])
series = SeriesId("bitcoin", "usd", "1h")
hours = pd.date_range("2021-01-01", periods=2000, freq="h", tz="UTC")
y = pd.Series(100 * np.exp(np.random.default_rng(0).normal(0, 0.003, 2000).cumsum()), hours)
for k in range(15):
    origin = hours[24 * k]
    record(ledger, synthetic_entries(series, 10, 48, origin))
    with ledger.writer() as conn:
        score_series(conn, series.name, y.loc[: hours[24 * k + 47]], 1000, datetime.now(UTC))
sys.stdout.write("done\\n")
"""

# Reads until it sees all 150 issues (bounded): each read transaction must be consistent.
READER = """
import json, sys
from sqlalchemy import func, select
from pipeline.ledger.db import open_ledger
from pipeline.ledger.schema import aggregates, issues, steps

ledger = open_ledger(url=sys.argv[1])
reads, torn = 0, []
for _ in range(200000):
    with ledger.reader() as conn:
        n_issues = conn.execute(select(func.count()).select_from(issues)).scalar_one()
        n_steps = conn.execute(select(func.count()).select_from(steps)).scalar_one()
        rows = conn.execute(
            select(aggregates.c.model, aggregates.c.step, aggregates.c.n)
            .where(aggregates.c.window == "all")
        ).all()
    reads += 1
    if n_steps != 48 * n_issues:
        torn.append(f"{n_issues} issues but {n_steps} steps")
    pooled = {r.model: r.n for r in rows if r.step == 0}
    for model, n in pooled.items():
        total = sum(r.n for r in rows if r.model == model and r.step != 0)
        if total != n:
            torn.append(f"{model}: pooled {n} != sum of steps {total}")
    if n_issues == 150:
        break
sys.stdout.write(json.dumps({"reads": reads, "torn": torn[:5], "issues": n_issues}) + "\\n")
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _counts(url: str) -> tuple[int, int]:
    ledger = open_ledger(url=url)
    with ledger.reader() as conn:
        counts = (
            conn.execute(select(func.count()).select_from(issues)).scalar_one(),
            conn.execute(select(func.count()).select_from(steps)).scalar_one(),
        )
    ledger.close()
    return counts


def test_kill_9_mid_write_leaves_a_ledger_the_next_sync_completes(ledger_url: str) -> None:
    settings = get_settings()
    built = build_store(settings.models_dir, settings.data_dir, refreshes=3, horizon=10)
    open_ledger(url=ledger_url).close()  # the schema exists before the writer starts
    proc = _python(KILLED_WRITER, ledger_url, str(settings.models_dir))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert line == "written\n", err
    assert _counts(ledger_url) == (0, 0)  # nothing half-written is visible
    ledger = open_ledger(url=ledger_url)
    assert sync(ledger, built.store).total == 8
    ledger.close()
    assert _counts(ledger_url) == (8, 80)


def test_one_writer_and_two_readers_never_see_a_torn_state(ledger_url: str) -> None:
    open_ledger(url=ledger_url).close()
    readers = [_python(READER, ledger_url) for _ in range(2)]
    writer = _python(WRITER, ledger_url)
    out, err = writer.communicate(timeout=600)
    assert writer.returncode == 0 and out == "done\n", err
    for reader in readers:
        out, err = reader.communicate(timeout=600)
        assert reader.returncode == 0, err
        report = json.loads(out)
        assert report["torn"] == [] and report["issues"] == 150 and report["reads"] >= 1
    assert _counts(ledger_url) == (150, 150 * 48)


@pytest.mark.usefixtures("restore_root_logger")
def test_unreachable_database_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the database is down the hook logs an error and returns False; the issues stay in
    the store, and the first run against a reachable ledger records them all."""
    settings = get_settings()
    built = build_store(settings.models_dir, settings.data_dir, refreshes=2)
    down = settings.model_copy(
        update={"ledger_url": SecretStr(f"postgresql://u:p@127.0.0.1:{free_port()}/x")}
    )
    with caplog.at_level("ERROR", logger="pipeline.ledger.hooks"):
        assert record_and_score(down) is False
    assert "forecast ledger not updated (the next run catches up)" in caplog.text
    assert record_and_score(settings, [built.series]) is True
    ledger = open_ledger(settings)
    with ledger.reader() as conn:
        assert conn.execute(select(func.count()).select_from(issues)).scalar_one() == 6
    ledger.close()
