"""The cycle, the refresh and ``python -m pipeline`` on a Dask cluster: one task per series.

``--scheduler ADDRESS`` (or ``DASK_SCHEDULER_ADDRESS``) connects to a running cluster;
``--workers N`` starts a local one of N worker processes (the cluster set-up is
:func:`pipeline.evaluation.parallel.dask_client`'s, the one ``compare_models.py --backend dask``
uses). Each raw file is ingested by one task, and each series is one task that depends on the
ingest of its raw file (4h and 1h share the hourly one): process -> train -> gate -> promote
for a cycle, process -> update -> issue for a refresh. A failing or slow series holds no other;
its outcome (never an exception) comes back to the driver, which alone writes the run history,
the metrics and the alerts, as it does without a cluster.

Every CoinGecko call of every worker takes its turn from one call budget on the cluster
(:class:`pipeline.ingest.ratelimit.DaskState`). A stop (SIGTERM) sets a ``distributed.Event``
the tasks look at between stages, so they end as they would locally. The workers read and write
``DATA_DIR`` and ``MODELS_DIR`` at the driver's absolute paths: on several hosts those must be
one shared filesystem, unless they are on an object store (each task then works in its worker's
own working copy, :func:`pipeline.storage.worker.task_settings`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.config import Settings
from pipeline.errors import PipelineError, UsageError
from pipeline.ingest import ratelimit
from pipeline.scheduling.cycle import (
    INGEST_ATTEMPTS,
    Ingested,
    Stages,
    StopRequestedError,
    ingest_raw,
    log_outcome,
    run_series,
    run_stage,
)
from pipeline.scheduling.history import SeriesOutcome
from pipeline.series import SeriesId

if TYPE_CHECKING:
    from pipeline.refresh.stage import SeriesRefresh
    from pipeline.train.stage import TrainResult

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: The name of the CoinGecko call budget on a cluster (kept between runs on one cluster).
BUDGET_NAME = "pipeline-coingecko-budget"


class Cluster:
    """A Dask cluster to run series on: the one at ``scheduler``, or a local one of ``workers``
    processes. Connects (or starts) on first use and stays up until :meth:`close`."""

    def __init__(
        self,
        scheduler: str | None = None,
        workers: int | None = None,
        *,
        budget_name: str = BUDGET_NAME,
    ) -> None:
        if scheduler and workers:
            raise UsageError("give --scheduler or --workers, not both")
        if workers is not None and workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        if not scheduler and not workers:
            raise UsageError("a cluster needs --scheduler ADDRESS or --workers N")
        self.scheduler, self.workers, self.budget_name = scheduler, workers, budget_name
        self._stack = contextlib.ExitStack()
        self._client: Any = None

    @classmethod
    def from_options(
        cls, settings: Settings, scheduler: str | None = None, workers: int | None = None
    ) -> Cluster | None:
        """The cluster the flags (else ``DASK_SCHEDULER_ADDRESS``) ask for; ``None``: none."""
        if scheduler or workers is not None:
            return cls(scheduler, workers)
        if settings.dask_scheduler_address:
            return cls(settings.dask_scheduler_address)
        return None

    def describe(self) -> str:
        return self.scheduler or f"a local cluster of {self.workers} worker processes"

    @property
    def address(self) -> str:
        """The scheduler's address (a local cluster is started to know it)."""
        return str(self.client().scheduler.address)

    def client(self) -> Any:
        """The ``distributed.Client`` (connecting, or starting the local cluster, once)."""
        if self._client is None:
            from pipeline.evaluation.parallel import dask_client

            self._client = self._stack.enter_context(dask_client(self.scheduler, self.workers or 0))
            logger.info("running series on the Dask cluster at %s", self._client.scheduler.address)
        return self._client

    def close(self) -> None:
        ratelimit.DaskState(self.budget_name).close()
        self._stack.close()
        self._client = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the jobs -----------------------------------------------------------------------------

    def run_cycle_series(
        self,
        series_list: Sequence[SeriesId],
        settings: Settings,
        stages: Stages,
        models: Sequence[str],
        stop: threading.Event,
        run_id: str,
    ) -> tuple[list[SeriesOutcome], float]:
        """Every series of a cycle as a task; the outcomes in ``series_list`` order and the
        seconds the ingests waited for the call budget, added up."""

        def failed(series: SeriesId, why: str) -> SeriesOutcome:
            return SeriesOutcome(series.name, "failed", f"cluster: {why}", stage="cluster")

        def done(outcome: SeriesOutcome) -> None:
            log_outcome(run_id, outcome)

        return self._map(
            series_list, settings, stages.ingest, stop, run_id, "cycle",
            lambda s: (_cycle_task, s, stages, list(models)), failed, done,
        )  # fmt: skip

    def run_refresh_series(
        self,
        series_list: Sequence[SeriesId],
        settings: Settings,
        ingest: Callable[[SeriesId, Settings], Any],
        process: Callable[[SeriesId, Settings], Any],
        stop: threading.Event,
        run_id: str,
        clock: Callable[[], Any],
    ) -> tuple[list[SeriesRefresh], float]:
        """Every series of a refresh as a task (see :meth:`run_cycle_series`)."""
        from pipeline.refresh.stage import SeriesRefresh

        def failed(series: SeriesId, why: str) -> SeriesRefresh:
            out = SeriesRefresh(series.name)
            out.status, out.stage, out.reason = "failed", "cluster", f"cluster: {why}"
            return out

        return self._map(
            series_list, settings, ingest, stop, run_id, "refresh",
            lambda s: (_refresh_task, s, process, clock), failed, lambda out: None, retries=1,
        )  # fmt: skip

    def run_pipeline_series(
        self,
        series_list: Sequence[SeriesId],
        settings: Settings,
        models: Sequence[str],
        days: int | None = None,
    ) -> list[Trained]:
        """``python -m pipeline`` on the cluster: per series ingest (once per raw file), process,
        train and promote the training champion; the outcomes in ``series_list`` order."""
        import functools

        from pipeline.ingest import ingest_series

        def failed(series: SeriesId, why: str) -> Trained:
            return Trained(series, stage="cluster", error=f"cluster: {why}")

        ingest = functools.partial(ingest_series, source=settings.source, days=days)
        outcomes, _ = self._map(
            series_list, settings, ingest, threading.Event(), uuid.uuid4().hex[:12], "pipeline",
            lambda s: (_pipeline_task, s, list(models)), failed, lambda out: None, retries=1,
        )  # fmt: skip
        return outcomes

    def _map(
        self,
        series_list: Sequence[SeriesId],
        settings: Settings,
        ingest: Callable[[SeriesId, Settings], Any],
        stop: threading.Event,
        run_id: str,
        job: str,
        task: Callable[[SeriesId], tuple[Any, ...]],
        failed: Callable[[SeriesId, str], T],
        done: Callable[[T], None],
        retries: int = INGEST_ATTEMPTS,
    ) -> tuple[list[T], float]:
        from distributed import Event, as_completed

        client = self.client()
        remote = worker_settings(settings)
        budget = None
        if settings.coingecko_calls_per_minute > 0:
            budget = ratelimit.DaskState(self.budget_name)
        stop_name = f"pipeline-stop-{run_id}"
        ingests: dict[SeriesId, Any] = {}
        futures: dict[Any, SeriesId] = {}
        for series in series_list:  # interleaved: a series' task is queued right after its ingest
            raw = series.raw
            if raw not in ingests:
                ingests[raw] = client.submit(
                    _ingest_task, ingest, raw, remote, stop_name, budget, retries,
                    key=f"ingest-{raw.name}-{run_id}", pure=False,
                )  # fmt: skip
            fn, *args = task(series)
            future = client.submit(
                fn, *args, remote, ingests[raw], stop_name,
                key=f"{job}-{series.name}-{run_id}", pure=False,
            )  # fmt: skip
            futures[future] = series
        results: dict[SeriesId, T] = {}
        with _forward_stop(stop, lambda: Event(stop_name, client=client).set()):
            for future in as_completed(list(futures)):
                series = futures[future]
                try:
                    results[series] = future.result()
                except Exception as exc:  # noqa: BLE001 - a lost worker fails its series only
                    logger.error("%s: the cluster task failed: %s", series.name, exc)
                    results[series] = failed(series, f"{type(exc).__name__}: {exc}")
                done(results[series])
        waited = 0.0
        for future in ingests.values():
            with contextlib.suppress(Exception):  # its failure is in the series' outcomes
                waited += future.result().waited_seconds
        with contextlib.suppress(Exception):
            Event(stop_name, client=client).clear()
        return [results[s] for s in series_list], round(waited, 3)


@dataclass
class Trained:
    """What ``python -m pipeline`` did for one series on the cluster: the training result, or
    the stage that failed and why (with the exit code of its error)."""

    series: SeriesId
    result: TrainResult | None = None
    stage: str | None = None
    error: str | None = None
    exit_code: int = 1


def worker_settings(settings: Settings) -> Settings:
    """The settings a task runs with: absolute folders (the same paths on every worker) and one
    fit at a time (a worker process is the unit of parallelism on a cluster)."""
    return settings.model_copy(
        update={
            "data_dir": Path(settings.data_dir).resolve(),
            "models_dir": Path(settings.models_dir).resolve(),
            "reports_dir": Path(settings.reports_dir).resolve(),
            "n_jobs": 1,
        }
    )


@contextlib.contextmanager
def _forward_stop(stop: threading.Event, signal_cluster: Callable[[], None]) -> Iterator[None]:
    """While inside, a set ``stop`` is passed on to the cluster's tasks (once)."""
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if stop.wait(0.5):
                logger.warning("stop requested: the cluster's tasks stop after their stage")
                with contextlib.suppress(Exception):
                    signal_cluster()
                return

    watcher = threading.Thread(target=watch, name="cluster-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join(timeout=5)


class ClusterStop(threading.Event):
    """The driver's stop, as the tasks of one run see it (a ``distributed.Event``)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        from distributed import Event

        self.remote = Event(name)

    def is_set(self) -> bool:
        if super().is_set():
            return True
        if self.remote.is_set():
            self.set()
        return super().is_set()


# -- the tasks (run on the workers) ----------------------------------------------------------


def _here(settings: Settings, raw: SeriesId, series: SeriesId | None = None) -> Settings:
    """The task's settings on this worker: store-backed folders on its own working copy, with
    what the task reads pulled (the raw file; the processed file and models of ``series``)."""
    from pipeline.ingest.store import raw_path
    from pipeline.process.stage import processed_path
    from pipeline.storage.worker import task_settings

    data = [raw_path(Path(), raw).with_suffix("").as_posix()]
    if series is None:
        return task_settings(settings, data=data)
    data.append(processed_path(Path(), series).with_suffix("").as_posix())
    return task_settings(settings, models=[f"{series.name}/"], data=data)


def _ingest_task(
    ingest: Callable[[SeriesId, Settings], Any],
    raw: SeriesId,
    settings: Settings,
    stop_name: str,
    budget: ratelimit.DaskState | None,
    retries: int,
) -> Ingested:
    stop, settings = ClusterStop(stop_name), _here(settings, raw)
    calls = ratelimit.budget_for(settings, budget) if budget is not None else None
    try:
        done = ingest_raw(ingest, raw, settings, stop, calls, retries)
    except StopRequestedError as exc:
        return Ingested(raw, exc)
    if done.error is not None and not isinstance(done.error, StopRequestedError):
        # Its text is the outcome; an exception of any class may not travel back intact.
        done.error = PipelineError(str(done.error))
    return done


def _cycle_task(
    series: SeriesId,
    stages: Stages,
    models: list[str],
    settings: Settings,
    ingested: Ingested,
    stop_name: str,
) -> SeriesOutcome:
    stop = ClusterStop(stop_name)
    if stop.is_set():
        return SeriesOutcome(series.name, "stopped", "stop requested before this series")
    settings = _here(settings, series.raw, series)
    outcome = run_series(series, settings, stages, models, stop, ingest=ingested.check)
    outcome.ingest_wait_seconds = ingested.waited_seconds
    return outcome


def _pipeline_task(
    series: SeriesId, models: list[str], settings: Settings, ingested: Ingested, stop_name: str
) -> Trained:
    from pipeline.process.stage import process_series
    from pipeline.train.stage import train_series

    stage = "ingest"
    settings = _here(settings, series.raw, series)
    try:
        ingested.check(series)
        stage = "process"
        process_series(series, settings)
        stage = "train"
        return Trained(series, train_series(series, settings, models=models, n_jobs=1))
    except Exception as exc:  # noqa: BLE001 - the driver reports it
        code = exc.exit_code if isinstance(exc, PipelineError) else 1
        return Trained(series, stage=stage, error=str(exc), exit_code=code)


def _refresh_task(
    series: SeriesId,
    process: Callable[[SeriesId, Settings], Any],
    clock: Callable[[], Any],
    settings: Settings,
    ingested: Ingested,
    stop_name: str,
) -> SeriesRefresh:
    from pipeline.refresh.stage import refresh_series

    stop, timeout = ClusterStop(stop_name), settings.stage_timeout_seconds
    settings = _here(settings, series.raw, series)

    def limited(s: SeriesId, st: Settings) -> Any:
        return run_stage("process", lambda: process(s, st), timeout, stop)

    return refresh_series(series, settings, ingest=ingested.check, process=limited, clock=clock)


__all__ = ["BUDGET_NAME", "Cluster", "ClusterStop", "Trained", "worker_settings"]
