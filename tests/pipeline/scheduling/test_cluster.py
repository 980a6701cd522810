"""The cycle on a Dask cluster: the local results, failure isolation, one CoinGecko budget for
every worker, and a real ``dask scheduler`` / ``dask worker`` pair."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.errors import UsageError
from pipeline.scheduling.cluster import Cluster
from pipeline.scheduling.cycle import Stages, run_cycle
from pipeline.scheduling.history import CycleRecord, read_history
from pipeline.scheduling.refresh_job import run_refresh
from tests.helpers.cluster import (
    FIXED_NOW,
    MODELS,
    RateLimitedCoinGecko,
    champions,
    coingecko_ingest,
    no_process,
    sample_stages,
    small,
)
from tests.helpers.scheduling import FakeTrainer, good_metrics, metrics_gate


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A local Dask cluster of 2 worker processes (started through the production set-up)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        with Cluster(workers=2, budget_name="test-budget") as running:
            running.client()
            yield running


@pytest.mark.slow
def test_cluster_cycle_gives_the_local_champions_and_paths(
    cluster: Cluster, tmp_path: Path
) -> None:
    local_settings, remote_settings = small(tmp_path, "local"), small(tmp_path, "cluster")
    local = run_cycle(local_settings, stages=sample_stages(), models=MODELS)
    remote = run_cycle(remote_settings, stages=sample_stages(), models=MODELS, cluster=cluster)

    assert local.executor == "local" and remote.executor.startswith("tcp://127.0.0.1:")
    assert [o.status for o in remote.series] == ["promoted"] * 6
    assert remote.status == local.status == "success"

    def decisions(record: CycleRecord) -> list[tuple[str, str, str | None, dict[str, float]]]:
        # every score, but not how long a fit took
        return [
            (
                o.series,
                o.status,
                o.candidate,
                {k: v for k, v in o.metrics.items() if "seconds" not in k},
            )
            for o in record.series
        ]

    assert decisions(remote) == decisions(local)
    assert champions(remote_settings) == champions(local_settings)
    assert len(champions(local_settings)) == 6
    # The driver alone wrote the history, once, with the cluster's outcomes.
    (line,) = read_history(remote_settings)
    assert line["run_id"] == remote.run_id and line["executor"] == remote.executor
    assert [s["series"] for s in line["series"]] == [s.name for s in remote_settings.series()]

    # The refresh job too: every served version gets a new issue from the same (current) data.
    local_refresh = run_refresh(local_settings, stages=sample_stages())
    remote_refresh = run_refresh(remote_settings, stages=sample_stages(), cluster=cluster)
    assert [(s["series"], s["status"]) for s in remote_refresh.series] == [
        (s["series"], s["status"]) for s in local_refresh.series
    ]
    assert remote_refresh.status == local_refresh.status


@pytest.mark.slow
def test_a_failing_series_holds_no_other(cluster: Cluster, tmp_path: Path) -> None:
    settings = small(tmp_path, "c", coins=["brokencoin", "bitcoin"], frequencies=["1d", "4h"])
    local = run_cycle(small(tmp_path, "l", coins=settings.coins, frequencies=["1d", "4h"]),
                      stages=sample_stages(), models=["naive", "drift"])  # fmt: skip
    record = run_cycle(settings, stages=sample_stages(), models=["naive", "drift"], cluster=cluster)

    outcomes = {o.series: (o.status, o.stage, o.reason) for o in record.series}
    assert outcomes["brokencoin-usd-1d"] == ("failed", "ingest", "ingest: injected ingest failure")
    assert outcomes["brokencoin-usd-4h"] == outcomes["brokencoin-usd-1d"]
    assert outcomes["bitcoin-usd-1d"][0] == outcomes["bitcoin-usd-4h"][0] == "promoted"
    assert record.status == "partial"
    assert [(o.series, o.status, o.reason) for o in record.series] == [
        (o.series, o.status, o.reason) for o in local.series
    ]


# -- one CoinGecko call budget for the whole cluster ----------------------------------------------

COINS = [f"coin{i:02d}" for i in range(10)]


@pytest.fixture
def limited_coingecko() -> Iterator[RateLimitedCoinGecko]:
    """The CoinGecko imitation allowing 6 requests a second, serving :data:`COINS`."""
    fake = RateLimitedCoinGecko(limit=6, window=1.0, coins=tuple(COINS), now=FIXED_NOW)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def ingest_stages() -> Stages:
    """The real CoinGecko ingest, then nothing but a fake trainer (only ingestion matters)."""
    return Stages(
        ingest=coingecko_ingest,
        process=no_process,
        train=FakeTrainer({"naive": good_metrics()}),
        gate=metrics_gate,
    )


def coingecko_settings(tmp: Path, fake: RateLimitedCoinGecko, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "coins": COINS, "frequencies": ["1d", "1h"], "history_days": 30,
        "coingecko_base_url": fake.base_url, "source": "coingecko", "http_max_attempts": 3,
        "http_backoff_initial": 0.01, "http_backoff_max": 0.05, "http_read_timeout": 10,
        "http_retry_budget": 30,
    }  # fmt: skip
    return small(tmp, "cg", **{**values, **overrides})


@pytest.mark.slow
def test_every_worker_takes_its_turn_from_one_budget(
    cluster: Cluster, tmp_path: Path, limited_coingecko: RateLimitedCoinGecko
) -> None:
    # 4 calls a second after a burst of 2: at most 2 + 4 = 6 in any second, the server's limit.
    settings = coingecko_settings(
        tmp_path, limited_coingecko, coingecko_calls_per_minute=240, coingecko_burst=2
    )
    record = run_cycle(settings, stages=ingest_stages(), models=["naive"], cluster=cluster)

    assert [o.status for o in record.series] == ["promoted"] * 20
    # one call per raw file (more if a read timed out on a busy machine: retries take turns too)
    assert len(limited_coingecko.arrivals) >= 20
    assert limited_coingecko.refused == 0
    assert limited_coingecko.most_in_window() <= 6
    assert record.ingest_wait_seconds == pytest.approx(
        sum(o.ingest_wait_seconds for o in record.series), abs=0.01
    )
    assert read_history(settings)[-1]["ingest_wait_seconds"] == record.ingest_wait_seconds


@pytest.mark.slow
def test_without_a_budget_the_workers_meet_429s(
    cluster: Cluster, tmp_path: Path, limited_coingecko: RateLimitedCoinGecko
) -> None:
    # What the budget prevents (this test failing would mean the one above proves nothing): 20
    # calls as fast as 2 workers go, against a limit of 3 in 10 s (however slow the machine)
    limited_coingecko.retry_after, limited_coingecko.limit, limited_coingecko.window = "0", 3, 10
    settings = coingecko_settings(tmp_path, limited_coingecko, coingecko_calls_per_minute=0)
    record = run_cycle(settings, stages=ingest_stages(), models=["naive"], cluster=cluster)

    assert limited_coingecko.refused > 0
    assert record.ingest_wait_seconds == 0.0


@pytest.mark.slow
def test_a_retry_after_holds_every_worker(
    cluster: Cluster, tmp_path: Path, limited_coingecko: RateLimitedCoinGecko
) -> None:
    limited_coingecko.faults = ["429-retry-after"]  # the first request is refused for 1 s
    limited_coingecko.retry_after = "1"
    settings = coingecko_settings(
        tmp_path, limited_coingecko, coins=COINS[:3], coingecko_calls_per_minute=120,
        coingecko_burst=1,
    )  # fmt: skip
    record = run_cycle(settings, stages=ingest_stages(), models=["naive"], cluster=cluster)

    assert [o.status for o in record.series] == ["promoted"] * 6
    (refused_at, refused), *later = limited_coingecko.arrivals
    assert refused and len(later) >= 6  # the refused call was made again
    assert all(t >= refused_at + 1.0 for t, _ in later)
    assert record.ingest_wait_seconds >= 1.0


# -- a real scheduler and worker, started as processes ---------------------------------------------


@pytest.mark.slow
def test_a_scheduler_and_worker_pair_gives_the_local_results(
    dask_processes: str, tmp_path: Path
) -> None:
    import distributed

    with distributed.Client(dask_processes, timeout="30s") as client:
        client.wait_for_workers(1, timeout=60)
    local_settings = small(tmp_path, "local", frequencies=["1d", "4h"])
    remote_settings = small(tmp_path, "remote", frequencies=["1d", "4h"])
    local = run_cycle(local_settings, stages=sample_stages(), models=MODELS)
    with Cluster(dask_processes, budget_name="pair-budget") as pair:
        remote = run_cycle(remote_settings, stages=sample_stages(), models=MODELS, cluster=pair)

    assert remote.executor == dask_processes
    assert [(o.series, o.status, o.candidate) for o in remote.series] == [
        (o.series, o.status, o.candidate) for o in local.series
    ]
    assert champions(remote_settings) == champions(local_settings)
    assert len(champions(remote_settings)) == 4


def test_cluster_flags_are_checked() -> None:
    with pytest.raises(UsageError, match="give --scheduler or --workers, not both"):
        Cluster("tcp://127.0.0.1:1", 2)
    with pytest.raises(UsageError, match="--workers must be at least 1, got 0"):
        Cluster(workers=0)
    settings = load_settings(dask_scheduler_address="tcp://10.0.0.5:8786")
    from_env = Cluster.from_options(settings)
    assert from_env is not None and from_env.scheduler == "tcp://10.0.0.5:8786"
    assert Cluster.from_options(load_settings()) is None
    flag = Cluster.from_options(settings, workers=3)
    assert flag is not None and flag.scheduler is None and flag.workers == 3


@pytest.mark.slow
def test_the_commands_run_on_a_local_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    import retrain_scheduler
    from pipeline.__main__ import main as pipeline_main

    for name, value in {
        "SOURCE": "sample", "COINS": "bitcoin", "FREQUENCIES": "1d,4h", "HISTORY_DAYS": "60",
        "BACKTEST_ORIGINS": "3", "SCHEDULER_METRICS_PORT": "0", "NO_PROXY": "127.0.0.1",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    code = pipeline_main(["--models", "naive,drift", "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "bitcoin-usd-1d  60 points  champion:" in out and "bitcoin-usd-4h" in out

    code = retrain_scheduler.main(["--once", "--no-catchup", "--models", "naive,drift",
                                   "--workers", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("bitcoin-usd-1d: ")
    (record,) = read_history(load_settings())
    assert record["executor"].startswith("tcp://127.0.0.1:")


def test_bad_cluster_flags_exit_2(
    capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    import retrain_scheduler
    from pipeline.__main__ import main as pipeline_main

    assert retrain_scheduler.main(["--once", "--workers", "0"]) == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
    assert pipeline_main(["--source", "sample", "--workers", "0"]) == 2
    with pytest.raises(SystemExit) as exc:
        retrain_scheduler.main(["--once", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"])
    assert exc.value.code == 2
