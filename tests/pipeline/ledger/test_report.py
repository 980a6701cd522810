"""The live report's pictures: each model keeps one colour in all three plots."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.colors import to_hex

from pipeline.__main__ import main
from pipeline.config import get_settings
from pipeline.evaluation.plots import _pyplot
from pipeline.ledger.aggregate import read_scores
from pipeline.ledger.db import open_ledger
from pipeline.ledger.read import leaderboard
from pipeline.ledger.report import live_figure, model_colours
from tests.helpers.ledger import DAILY, build_store

FLAGS = ["--coin", "bitcoin", "--freq", "1d"]


def test_model_colours_are_by_name_not_by_order() -> None:
    colours = model_colours(["naive", "drift", "arima", "naive"])
    assert colours == model_colours(["arima", "naive", "drift"])
    assert len(set(colours.values())) == 3
    twenty = model_colours(f"model_{i}" for i in range(20))  # more than the default models
    assert len(set(twenty.values())) == 20


@pytest.mark.usefixtures("restore_root_logger")
def test_a_model_has_one_colour_in_every_plot(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LEDGER_URL", ledger_url)
    get_settings.cache_clear()
    settings = get_settings()
    build_store(
        settings.models_dir, settings.data_dir, models=("naive", "drift", "arima"), observed=135
    )
    assert main(["ledger", "sync", *FLAGS]) == 0
    assert main(["ledger", "score", *FLAGS]) == 0
    ledger = open_ledger(url=ledger_url)
    try:
        board = leaderboard(ledger, DAILY.name, window="all", steps=True)
        with ledger.reader() as conn:
            scores = read_scores(conn, DAILY.name)
    finally:
        ledger.close()
    # the plots draw the models in different orders: by name and by leaderboard rank
    ranked = [r.model for r in board.rows]
    assert ranked != sorted(ranked), f"the fixture must rank the models out of name order: {ranked}"
    plt = _pyplot()
    fig = live_figure(scores, board, plt)
    try:
        seen: dict[str, set[str]] = {}
        for ax in fig.axes:
            drawn = [(line.get_label(), line.get_color()) for line in ax.get_lines()]
            drawn += [(c.get_label(), c.lines[0].get_color()) for c in ax.containers]
            for label, colour in drawn:
                if not str(label).startswith("_"):  # the grey reference lines, error bar parts
                    seen.setdefault(str(label), set()).add(to_hex(colour))
        assert set(seen) == {"naive", "drift", "arima"}
        assert all(len(c) == 1 for c in seen.values()), seen
        assert len({c for cs in seen.values() for c in cs}) == 3
    finally:
        plt.close(fig)
