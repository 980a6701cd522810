"""kill -9 during a ledger write: real ``python -m pipeline ledger score`` processes (sync, then
score) on an SQLite ledger, SIGKILLed inside their write transactions.

The child announces each write transaction just before it commits (an SQLAlchemy ``commit``
event, which fires before the driver's commit). Killed there — recording a series' issues or
scoring a series — it must leave whole issues only, no score without its step, and aggregates
that summarise exactly the committed scores; the next run must record every issue, score every
matured step and leave the same ledger as one uninterrupted run. A second test kills the child
the moment it announces a commit, so the kill races the commit itself.
"""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.ledger.db import open_ledger
from pipeline.ledger.schema import SCORE_COLUMNS, aggregates
from pipeline.series import SeriesId
from tests.helpers.ledger import DAILY, build_store
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.slow

SERIES = [DAILY, SeriesId("ethereum", "usd", "1d")]
#: Write transactions of a run on a fresh ledger: record each series, then score each series.
WRITES = 2 * len(SERIES)

# Runs the real CLI; prints "commit N" before the N-th write transaction commits and, when N is
# argv[1], waits there to be killed.
CHILD = """
import sys, time
from sqlalchemy import event
from sqlalchemy.engine import Engine

stop_at, count = int(sys.argv[1]), 0


@event.listens_for(Engine, "commit")
def _announce(conn):
    global count
    if not conn.get_execution_options().get("ledger_write"):
        return
    count += 1
    sys.stdout.write(f"commit {count}\\n")
    sys.stdout.flush()
    if count == stop_at:
        time.sleep(600)


from pipeline.ledger.cli import main

raise SystemExit(main(["score"]))
"""


class Child:
    """One ``ledger score`` run in its own process (its log in ``<root>/child.log``)."""

    def __init__(self, root: Path, url: str, stop_at: int = 0) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATA_DIR": str(root / "data"),
            "MODELS_DIR": str(root / "models"),
            "LEDGER_URL": url,
            "COINS": ",".join(sorted({s.coin for s in SERIES})),
            "FREQUENCIES": "1d",
            "LOG_FORMAT": "text",
        }
        self.log = root / "child.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(stop_at)], cwd=root, env=env,
                stdout=subprocess.PIPE, stderr=log,
            )  # fmt: skip
        self.commits = 0
        self._pending = b""

    def until_commit(self, n: int, timeout: float = 180) -> bool:
        """Read the child's announcements until "commit n" (True) or its end (False), bounded
        by ``timeout``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while self.commits < n:
            left = deadline - time.monotonic()
            assert left > 0, f"no 'commit {n}' within {timeout:g} s: {self.log.read_text()}"
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return False
            *lines, self._pending = (self._pending + chunk).split(b"\n")
            for line in lines:
                if line.startswith(b"commit "):
                    self.commits = max(self.commits, int(line.split()[1]))
        return True

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL

    def finish(self, timeout: float = 300) -> int:
        """Wait for the child's end (bounded); its exit code."""
        try:
            self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        return self.proc.returncode

    def completes(self) -> None:
        code = self.finish()
        assert code == 0, f"exit {code}: {self.log.read_text()[-3000:]}"


# -- the ledger's content and invariants -------------------------------------------------------

_KEY = "i.series, i.model, i.version, i.issue_id"
_SNAPSHOT = {
    "issues": "SELECT series, model, version, issue_id, issued_at, origin, last_price, horizon, "
    "champion, forecast_sha256, model_sha256, path FROM issues",
    "steps": f"SELECT {_KEY}, s.step, s.ds, s.mean, s.lower_80, s.upper_80, s.lower_95, "
    "s.upper_95 FROM steps s JOIN issues i ON i.id = s.issue",
    "scores": f"SELECT {_KEY}, c.step, c.series, c.model, c.origin, c.ds, c.actual, c.scale, "
    + ", ".join(f"c.{name}" for name in SCORE_COLUMNS)
    + " FROM scores c JOIN issues i ON i.id = c.issue",
    "actuals": "SELECT series, ds, price FROM actuals",
    "corrections": "SELECT series, ds, old_price, new_price FROM corrections",
    "aggregates": "SELECT "
    + ", ".join(f'"{c.name}"' for c in aggregates.columns if c.name != "refreshed_at")
    + " FROM aggregates",
}


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the ledger holds but the wall-clock stamps (recorded_at, scored_at,
    seen_at, refreshed_at) and the row ids, in a canonical order."""
    return {
        name: sorted(_rows(db, sql), key=lambda r: tuple(str(v) for v in r))
        for name, sql in _SNAPSHOT.items()
    }


def check_consistent(db: Path) -> dict[str, int]:
    """The invariants a killed write must keep; returns issues and scores per series."""
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert _rows(db, "PRAGMA foreign_key_check") == []
    torn = _rows(
        db,
        "SELECT i.id, i.horizon, COUNT(s.step) FROM issues i LEFT JOIN steps s ON s.issue = i.id "
        "GROUP BY i.id HAVING COUNT(s.step) != i.horizon",
    )
    assert torn == [], f"issues without all their steps: {torn}"
    orphans = _rows(
        db,
        "SELECT c.issue, c.step FROM scores c LEFT JOIN steps s "
        "ON s.issue = c.issue AND s.step = c.step WHERE s.issue IS NULL OR s.ds != c.ds",
    )
    assert orphans == [], f"scores without their step: {orphans}"
    unpriced = _rows(
        db,
        "SELECT c.series, c.ds FROM scores c LEFT JOIN actuals a "
        "ON a.series = c.series AND a.ds = c.ds WHERE a.price IS NULL OR a.price != c.actual",
    )
    assert unpriced == [], f"scores without the actual they used: {unpriced}"
    counts: dict[str, int] = {}
    for (series,) in _rows(db, "SELECT DISTINCT series FROM issues"):
        steps = _rows(
            db, f"SELECT COUNT(*) FROM steps s JOIN issues i ON i.id = s.issue "
            f"WHERE i.series = '{series}'",
        )[0][0]  # fmt: skip
        scored = dict(_rows(db, f"SELECT model, COUNT(*) FROM scores WHERE series = '{series}' "
                                "GROUP BY model"))  # fmt: skip
        pooled = dict(_rows(db, f"SELECT model, n FROM aggregates WHERE series = '{series}' "
                                "AND \"window\" = 'all' AND step = 0"))  # fmt: skip
        # A series is scored in one transaction: all its matured steps (here every step) with
        # the aggregates that summarise them, or nothing at all.
        assert sum(scored.values()) in (0, steps), f"{series}: part of its steps scored"
        assert pooled == scored, f"{series}: aggregates {pooled} != scores {scored}"
        counts[series] = sum(scored.values())
    return counts


# -- the tests ---------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """An artifact store with two series x two models x (training + 3 refresh issues) and
    every price of their horizons in the processed files; an SQLite ledger with its schema."""
    for series in SERIES:
        build_store(tmp_path / "models", tmp_path / "data", series=series, refreshes=3)
    open_ledger(url=url_of(tmp_path, "ledger")).close()
    return tmp_path


def url_of(root: Path, name: str) -> str:
    return f"sqlite:///{root / f'{name}.sqlite3'}"


def reference(root: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The ledger of one uninterrupted run on a fresh ledger (checking it commits WRITES
    transactions)."""
    url = url_of(root, "reference")
    open_ledger(url=url).close()
    child = Child(root, url)
    assert child.until_commit(WRITES)
    child.completes()
    assert child.commits == WRITES
    return snapshot(root / "reference.sqlite3")


def test_killed_before_a_commit_the_next_run_completes_the_ledger(world: Path) -> None:
    want = reference(world)
    issues = {s.name: sum(1 for r in want["issues"] if r[0] == s.name) for s in SERIES}
    assert set(issues.values()) == {8}
    for stop_at in range(1, WRITES + 1):  # record A, record B, score A, score B
        name = f"killed-{stop_at}"
        db, url = world / f"{name}.sqlite3", url_of(world, name)
        open_ledger(url=url).close()
        child = Child(world, url, stop_at=stop_at)
        assert child.until_commit(stop_at)
        child.kill()
        scored = check_consistent(db)
        recorded = {r[0] for r in _rows(db, "SELECT DISTINCT series FROM issues")}
        # exactly the transactions before the killed one are there
        assert len(recorded) == min(stop_at - 1, len(SERIES)), recorded
        assert sum(1 for n in scored.values() if n) == max(stop_at - 1 - len(SERIES), 0), scored
        Child(world, url).completes()
        check_consistent(db)
        assert snapshot(db) == want, f"killed before commit {stop_at}: not the reference"


def test_killed_as_it_commits_every_time_then_completed(world: Path) -> None:
    """One ledger; run k is killed the moment it announces its k-th commit (the kill races the
    commit; a run with fewer writes left completes), then a run that completes it."""
    want = reference(world)
    db, url = world / "ledger.sqlite3", url_of(world, "ledger")
    killed = 0
    for at in range(1, WRITES + 1):
        child = Child(world, url)
        if child.until_commit(at):
            child.kill()
            killed += 1
        else:
            child.completes()
        check_consistent(db)
    assert killed >= 2
    Child(world, url).completes()
    check_consistent(db)
    assert snapshot(db) == want
