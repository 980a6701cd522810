"""The replay of the served system: no look-ahead, champion changes, served scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from pipeline.config import get_settings
from pipeline.errors import UsageError
from pipeline.evaluation.backtest import BacktestResult, run_backtest
from pipeline.evaluation.protocol import BacktestProtocol
from pipeline.evaluation.replay import count_changes, matured, origin_scores, replay
from pipeline.forecasters.base import Forecaster
from pipeline.series import SeriesId

SERIES = SeriesId("bitcoin", "usd", "1d")
HORIZON = 10
START = pd.Timestamp("2021-01-01", tz="UTC")
#: The series: 100, 101, 102, ... so a flat forecast misses by exactly the step number.
PRICES = pd.Series(
    100.0 + np.arange(200, dtype=float),
    index=pd.date_range(START, periods=200, freq="1D", tz="UTC", name="ds"),
    name="y",
)


class Flat(Forecaster):
    """The naive baseline of these tests: the last price, 95% band covering 9 of 10 steps."""

    name: ClassVar[str] = "naive"
    min_points: ClassVar[int] = 3
    complexity: ClassVar[int] = 0

    def _fit(self, y: pd.Series) -> None:
        self.value_ = float(y.iloc[-1])
        self.last_ = y.index[-1]

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        mean = np.full(h, self.value_)
        return pd.DataFrame(
            {
                "mean": mean,
                "lower_80": mean,
                "upper_80": mean + 7.5,
                "lower_95": mean - 1,
                "upper_95": mean + 9.5,
            }
        )

    def _save_state(self, folder: Path) -> list[str]:  # pragma: no cover - not persisted
        return []

    def _load_state(self, folder: Path) -> None:  # pragma: no cover
        pass


class Oracle(Flat):
    """Sees the future from origins inside [``since``, ``until``): the exact path there but
    for the last step, 2 above the price and missed by the bands (so that its 95% coverage,
    90%, is eligible; MASE 0.2); elsewhere exactly the naive forecast."""

    name: ClassVar[str] = "oracle"
    complexity: ClassVar[int] = 5
    since: ClassVar[pd.Timestamp] = START
    until: ClassVar[pd.Timestamp] = START + pd.Timedelta(days=10_000)

    def _predict(self, h: int, levels: list[int]) -> pd.DataFrame:
        origin = self.last_ + pd.Timedelta(days=1)
        if not type(self).since <= origin < type(self).until:
            return super()._predict(h, levels)
        future = PRICES[PRICES.index >= origin].to_numpy()[:h].copy()
        future[-1] += 2.0  # the last step misses
        return pd.DataFrame(
            {
                "mean": future,
                "lower_80": future - 0.5,
                "upper_80": future + 0.5,
                "lower_95": future - 1.0,
                "upper_95": future + 1.0,
            }
        )


def _grid(since: str, until: str = "2030-01-01", step: str = "3D") -> BacktestResult:
    Oracle.since, Oracle.until = pd.Timestamp(since, tz="UTC"), pd.Timestamp(until, tz="UTC")
    protocol = BacktestProtocol(
        "1d",
        HORIZON,
        pd.Timedelta(step),
        PRICES.index[20],
        PRICES.index[-HORIZON],
        train_window=20,
    )
    return run_backtest(PRICES, [Flat, Oracle], protocol, series=SERIES.name, progress=False)


def _expected(grid: BacktestResult, k: int, since: str, until: str) -> list[str]:
    """Served model by the definition: the oracle once one of the k latest origins whose
    horizon ended before the decision shows its perfect forecast."""
    lo, hi = pd.Timestamp(since, tz="UTC"), pd.Timestamp(until, tz="UTC")
    out = []
    for t in grid.origins:
        known = [o for o in grid.origins if o + pd.Timedelta(days=HORIZON) <= t]
        if len(known) < k:
            continue
        out.append("oracle" if any(lo <= o < hi for o in known[-k:]) else "naive")
    return out


@pytest.mark.parametrize("rule", ["means", "evidence"])
def test_a_model_that_sees_the_future_is_chosen_only_once_its_evidence_matured(rule: str) -> None:
    since = "2021-03-01"
    grid = _grid(since)
    result = replay(grid, SERIES, get_settings(), selection_origins=2, rule=rule)
    served = [s.served for s in result.steps]
    first = result.origins[served.index("oracle")]
    # the grid runs every 3 days from 2021-01-21: 2021-03-01 is an origin; its horizon ends
    # 2021-03-10, so the first decision that may know it is the next origin, 2021-03-13 (under
    # the evidence rule one origin is not significant evidence: two are, on 2021-03-16)
    assert pd.Timestamp(since, tz="UTC") in grid.origins
    assert first == pd.Timestamp("2021-03-13" if rule == "means" else "2021-03-16", tz="UTC")
    assert all(m == "naive" for m in served[: served.index("oracle")])
    if rule == "means":
        assert served == _expected(grid, 2, since, "2030-01-01")
    assert served[served.index("oracle") :] == ["oracle"] * (len(served) - served.index("oracle"))
    assert result.changes() == 1


def test_champion_changes_are_counted_and_served_scores_are_the_chosen_models() -> None:
    since, until = "2021-03-01", "2021-04-01"
    grid = _grid(since, until)
    result = replay(grid, SERIES, get_settings(), selection_origins=2, rule="means")
    served = [s.served for s in result.steps]
    assert served == _expected(grid, 2, since, until)
    assert served.count("oracle") > 0 and served[-1] == "naive"
    assert result.changes() == 2
    table = result.table()
    assert table.loc["served", "changes"] == 2 and table.loc["naive", "changes"] == 0
    # the served forecast at each decision is the chosen model's own forecast at that origin
    scores = origin_scores(grid)
    got = result.served_scores()
    for step in result.steps:
        expected = scores.loc[(step.origin, step.served)]
        assert got.loc[step.origin, "model"] == step.served
        assert got.loc[step.origin, "mase"] == expected["mase"]
        assert got.loc[step.origin, "wis"] == expected["wis"]
    seeing = [
        s.origin
        for s in result.steps
        if s.served == "oracle" and s.origin < pd.Timestamp(until, tz="UTC")
    ]
    assert seeing and list(got.loc[seeing, "mase"]) == pytest.approx([0.2] * len(seeing))
    # ratios are served over naive on the same decision origins
    naive = scores.xs("naive", level="model").loc[result.origins]
    assert table.loc["served", "mase_ratio"] == pytest.approx(
        got["mase"].mean() / naive["mase"].mean()
    )
    assert table.loc["naive", "mase_ratio"] == 1.0


def test_under_the_evidence_rule_one_lucky_origin_is_not_enough() -> None:
    # one seeing origin in the window of two (the other is naive's forecast): its MASE gain is
    # not significant, so naive keeps serving; with two, the oracle wins with confidence
    grid = _grid("2021-03-01")
    result = replay(grid, SERIES, get_settings(), selection_origins=2, rule="evidence")
    steps = {s.origin.strftime("%m-%d"): s for s in result.steps}
    assert steps["03-13"].served == "naive"
    assert "without a significant MASE gain over naive" in steps["03-13"].reason
    assert "oracle p=0.20" in steps["03-13"].reason
    assert steps["03-16"].served == "oracle"
    assert "oracle's point forecast beats naive's with confidence (DM p=0.000)" in (
        steps["03-16"].reason
    )
    assert "oracle beats the serving naive with confidence (WIS DM p=0.000)" in (
        steps["03-16"].reason
    )


def test_count_changes_and_matured_origins() -> None:
    assert count_changes(["a", "a", "b", "b", "a", "c"]) == 3
    assert count_changes(["a"]) == 0 and count_changes([]) == 0
    days = [START + pd.Timedelta(days=d) for d in (0, 5, 10)]
    # an origin is known once its whole 5-day horizon lies before the decision
    assert matured(days, START + pd.Timedelta(days=10), 5, "1d") == days[:2]
    assert matured(days, START + pd.Timedelta(days=9), 5, "1d") == days[:1]


def test_a_replay_needs_naive_and_enough_history() -> None:
    grid = _grid("2021-03-01")
    with pytest.raises(UsageError, match="no decision origin: the grid's .* leave none with 99"):
        replay(grid, SERIES, get_settings(), selection_origins=99)
    without: Any = BacktestResult(**{**grid.__dict__, "models": ["oracle"]})
    with pytest.raises(UsageError, match="needs the naive baseline"):
        replay(without, SERIES, get_settings(), selection_origins=2)
