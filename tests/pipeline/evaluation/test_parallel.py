"""Parallel backtests: loky workers and a real Dask cluster give the sequential results."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import pytest

from pipeline.errors import UsageError
from pipeline.evaluation.backtest import run_backtest
from pipeline.evaluation.parallel import Progress, check_backend, plan
from tests.helpers.backtests import LastValue, Trend, small_protocol
from tests.helpers.prices import random_walk_prices


def _comparable(result: Any) -> pd.DataFrame:
    return result.folds.sort_values(["model", "origin", "step"]).reset_index(drop=True)


def test_plan_groups_refit_runs_and_puts_slow_models_first() -> None:
    groups = plan([LastValue, Trend], {"trend": {"a": 1}}, [10, 20, 30, 40, 50], refit_every=2)
    assert [(g.spec, g.positions) for g in groups] == [
        (Trend, [10, 20]),
        (Trend, [30, 40]),
        (Trend, [50]),
        (LastValue, [10, 20]),
        (LastValue, [30, 40]),
        (LastValue, [50]),
    ]
    assert [g.params for g in groups[:3]] == [{"a": 1}] * 3 and groups[3].params == {}


def test_loky_workers_give_the_sequential_results() -> None:
    y = random_walk_prices(300)
    protocol = small_protocol(y, n_origins=6)
    local = run_backtest(y, [LastValue, Trend], protocol, n_jobs=1)
    parallel = run_backtest(y, [LastValue, Trend], protocol, n_jobs=2, backend="loky")
    pd.testing.assert_frame_equal(_comparable(local), _comparable(parallel))
    assert local.summary()["trend"]["mase"] == parallel.summary()["trend"]["mase"]


@pytest.mark.slow
def test_dask_cluster_gives_the_local_results() -> None:
    distributed = pytest.importorskip("distributed")
    y = random_walk_prices(300)
    protocol = small_protocol(y, n_origins=6, refit_every=2)
    local = run_backtest(y, [LastValue, Trend], protocol, n_jobs=1)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
    ):
        remote = run_backtest(
            y, [LastValue, Trend], protocol, backend="dask", scheduler=cluster.scheduler_address
        )
    pd.testing.assert_frame_equal(_comparable(local), _comparable(remote))
    cols = ["mase", "coverage_95", "winkler_95"]
    for model in ("last", "trend"):
        assert [local.summary()[model][c] for c in cols] == [
            remote.summary()[model][c] for c in cols
        ]


def test_progress_logs_about_every_tenth_without_a_terminal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.evaluation.parallel")
    progress = Progress(20, bar=False)
    for _ in range(10):
        progress(2)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"backtest progress: {n}/20 folds" for n in range(2, 21, 2)]
    caplog.clear()
    coarse = Progress(4, bar=False)
    coarse(3)
    coarse(1)
    assert [r.getMessage() for r in caplog.records] == [
        "backtest progress: 3/4 folds",
        "backtest progress: 4/4 folds",
    ]


def test_unknown_backend_names_the_choices() -> None:
    check_backend("loky")
    with pytest.raises(UsageError, match="unknown backend 'ray': use loky or dask"):
        check_backend("ray")
