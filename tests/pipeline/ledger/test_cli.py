"""``python -m pipeline ledger sync|score|report|replay`` through ``pipeline.__main__.main``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.__main__ import main
from pipeline.config import get_settings
from pipeline.ledger.db import open_ledger
from pipeline.ledger.read import leaderboard, served_at
from pipeline.ledger.schema import issues
from tests.helpers.ledger import DAILY, build_store
from tests.helpers.prices import random_walk_prices
from tests.helpers.processed import write_processed
from tests.helpers.processes import free_port

FLAGS = ["--coin", "bitcoin", "--freq", "1d"]


@pytest.fixture
def configured(ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LEDGER_URL", ledger_url)
    get_settings.cache_clear()
    return ledger_url


@pytest.mark.usefixtures("restore_root_logger")
def test_sync_score_and_report(
    configured: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = get_settings()
    build_store(settings.models_dir, settings.data_dir, observed=135)
    assert main(["ledger", "sync", *FLAGS]) == 0
    assert "recorded 8 issue(s)" in capsys.readouterr().out
    assert main(["ledger", "score", *FLAGS]) == 0
    out = capsys.readouterr().out
    assert "recorded 0 issue(s)" in out and "bitcoin-usd-1d: 80 step(s) scored" in out
    assert main(["ledger", "report", *FLAGS]) == 0
    folder = tmp_path / "reports" / "ledger" / "bitcoin-usd-1d"
    text = (folder / "live.md").read_text()
    assert "**naive** (champion)" in text and "## Window: 30d" in text
    assert "WIS ratio to naive by step" in text
    assert (folder / "live.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.usefixtures("restore_root_logger")
def test_replay_issues_night_by_night(configured: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = get_settings()
    y = random_walk_prices(200, seed=5)
    write_processed(settings.data_dir, y, DAILY)
    since = y.index[150]
    args = ["ledger", "replay", *FLAGS, "--since", f"{since:%Y-%m-%d}", "--refit-every", "5"]
    assert main(args) == 0
    assert "bitcoin-usd-1d: 50 nights, 100 issues, fits 20, updates 80" in capsys.readouterr().out
    ledger = open_ledger(url=configured)
    board = leaderboard(ledger, DAILY.name, window="all")
    assert board.champion == "naive"
    horizon = settings.horizon("1d")
    # issues from the last `horizon` nights are partly matured: 50 issues, steps up to the end
    expected = sum(min(horizon, 49 - k) for k in range(50))
    naive = next(r for r in board.rows if r.model == "naive")
    assert naive.figures["n"] == expected
    served = served_at(ledger, DAILY.name, since.to_pydatetime() + timedelta(hours=1))
    assert served is not None and served.origin == since.to_pydatetime()
    with ledger.reader() as conn:
        assert conn.execute(select(func.count()).select_from(issues)).scalar_one() == 100
    ledger.close()
    assert main(args) == 0  # a second replay adds nothing
    ledger = open_ledger(url=configured)
    with ledger.reader() as conn:
        assert conn.execute(select(func.count()).select_from(issues)).scalar_one() == 100
    ledger.close()


@pytest.mark.usefixtures("restore_root_logger")
def test_bad_usage_and_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ledger", "replay", *FLAGS]) == 2  # --since is required
    assert main(["ledger", "nonsense"]) == 2
    monkeypatch.setenv("LEDGER_URL", f"postgresql://u:pw-secret-123@127.0.0.1:{free_port()}/x")
    get_settings.cache_clear()
    assert main(["ledger", "sync", *FLAGS]) == 1
    err = capsys.readouterr().err
    assert "open failed (OperationalError" in err and "the next sync records what is missing" in err
    assert "pw-secret-123" not in err
