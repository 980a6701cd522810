"""The Markdown tables: order, champion mark, number formats and ratios to naive."""

from __future__ import annotations

import pandas as pd

from pipeline.evaluation.tables import metrics_table, wis_horizon_table


def test_metrics_table_sorts_by_mase_and_marks_the_champion() -> None:
    summary = {"b": {"mase": 2.0}, "a": {"mase": 1.0}, "c": {"mase": float("nan")}}
    lines = metrics_table(summary, "b").splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| a", "| **b** *", "| c"]
    assert lines[2].split(" | ")[1] == "1.000" and lines[4].split(" | ")[1] == "–"


def test_wis_columns_show_the_score_and_its_ratio_to_naive() -> None:
    summary = {"naive": {"mase": 1.0, "wis": 2500.4, "wis_ratio": 1.0}, "m": {"mase": 1.0}}
    header, _, *rows = metrics_table(summary).splitlines()
    cells = dict(zip(header.split(" | "), rows[0].split(" | "), strict=True))
    assert (cells["WIS"], cells["WIS / naive"]) == ("2,500", "1.000")
    by_h = pd.DataFrame({"model": ["naive", "m"], "step": [1, 1], "wis": [2500.4, 12.345]})
    ratios = pd.DataFrame({"naive": [1.0], "m": [0.004937]}, index=[1])
    table = wis_horizon_table(by_h, ratios, [1]).splitlines()
    assert table[0] == "| Step | m | naive |"
    assert table[2] == "| 1 | 12.35 (0.005) | 2,500 (1.000) |"
