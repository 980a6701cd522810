"""One retraining cycle: ingest -> process -> train -> gate -> promote, for every series.

A cycle never changes a champion unless the new candidate was trained completely, passed the
quality rules and is not worse than the serving champion beyond a tolerance (the decision is
:mod:`pipeline.evaluation.champion`'s). Two cycles never overlap (:func:`cycle_lock`), each raw
file is ingested once per cycle even when several series are built from it (4h and 1h from the
hourly file), every cycle is recorded in the run history, the metrics textfile is rewritten and
the API is asked to reload when something was promoted.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tenacity import (
    RetryError,
    retry,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings
from pipeline.errors import IngestError, PipelineError
from pipeline.evaluation.champion import GateDecision, backtest_gate, bootstrap
from pipeline.evaluation.live import LIVE_KEY, live_promotion
from pipeline.ingest import ratelimit
from pipeline.ingest.breaker import CircuitOpenError
from pipeline.scheduling.history import (
    CycleRecord,
    SeriesOutcome,
    append_history,
    cycle_lock,
)
from pipeline.scheduling.ledger_update import update_ledger
from pipeline.scheduling.metrics import write_metrics_file
from pipeline.scheduling.notify import alert_if_needed, notify_api
from pipeline.series import SeriesId
from pipeline.storage.sync import after_run, before_read

if TYPE_CHECKING:
    from pipeline.scheduling.cluster import Cluster

logger = logging.getLogger(__name__)

#: Attempts of the ingest stage (transient source failures are retried with backoff).
INGEST_ATTEMPTS = 2


class StageTimeoutError(PipelineError):
    """A stage ran past its time limit."""


class StopRequestedError(PipelineError):
    """SIGTERM/SIGINT arrived; the cycle stops between stages."""


@dataclass
class Stages:
    """The stage functions a cycle calls (the same ones the CLI runs); tests inject fakes.

    ``ingest`` is given a raw series (:attr:`SeriesId.raw`), once per cycle; the others are
    given each configured series.
    """

    ingest: Callable[[SeriesId, Settings], Any]
    process: Callable[[SeriesId, Settings], Any]
    train: Callable[[SeriesId, Settings, Sequence[str]], Any]
    gate: Callable[[SeriesId, Settings, Any, str | None], GateDecision] = field(
        default=lambda *args: backtest_gate(*args)
    )


def default_stages() -> Stages:
    from pipeline.ingest import ingest_series
    from pipeline.process.stage import process_series
    from pipeline.train.stage import train_series

    def train(series: SeriesId, settings: Settings, models: Sequence[str]) -> Any:
        # N_JOBS fits of one series in parallel (a cluster task runs with N_JOBS=1).
        return train_series(series, settings, models=models, promote=False, n_jobs=settings.n_jobs)

    return Stages(ingest=ingest_series, process=process_series, train=train)


def run_stage(
    name: str, fn: Callable[[], Any], timeout: float, stop: threading.Event, retries: int = 1
) -> Any:
    """Run ``fn`` with a time limit; retry transient ingest failures with backoff.

    A stage that times out is abandoned (its thread may still finish, but nothing it returns is
    used, and training never promotes by itself), so the champion is never changed by it.
    """
    if stop.is_set():
        raise StopRequestedError(f"stop requested before {name}")

    @retry(
        # An open circuit refuses at once: retrying it only waits.
        retry=retry_if_exception_type(IngestError) & retry_if_not_exception_type(CircuitOpenError),
        stop=stop_after_attempt(max(1, retries)),
        wait=wait_exponential(multiplier=1, max=30),
        reraise=True,
        before_sleep=lambda state: logger.warning(
            "stage %s failed (%s); retrying",
            name,
            state.outcome.exception() if state.outcome else "",
        ),
    )
    def attempt() -> Any:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stage-{name}")
        # The caller's context (the run's CoinGecko call budget) goes with the stage.
        future = pool.submit(contextvars.copy_context().run, fn)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            raise StageTimeoutError(f"stage {name} timed out after {timeout:g} s") from None
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    try:
        return attempt()
    except RetryError as exc:  # pragma: no cover - reraise=True makes this unreachable
        raise exc.last_attempt.exception() or exc from None


@dataclass
class Ingested:
    """One raw file's ingest in a cycle: ``error`` is why it failed (``None``: it worked), and
    ``waited_seconds`` how long its calls waited for the CoinGecko call budget."""

    raw: SeriesId
    error: Exception | None = None
    waited_seconds: float = 0.0

    def check(self, series: SeriesId) -> None:
        """Raise the ingest's error for ``series``, which is built from this raw file."""
        if self.error is not None:
            raise self.error


def ingest_raw(
    ingest: Callable[[SeriesId, Settings], Any],
    raw: SeriesId,
    settings: Settings,
    stop: threading.Event,
    budget: ratelimit.CallBudget | None = None,
    retries: int = INGEST_ATTEMPTS,
) -> Ingested:
    """Ingest one raw file with the stage's time limit and retries, every CoinGecko call taking
    its turn from ``budget``. Raises only :class:`StopRequestedError` (not an outcome of the
    ingest: a later cycle ingests it)."""
    with ratelimit.use(budget) as meter:
        try:
            run_stage(
                "ingest",
                lambda: ingest(raw, settings),
                settings.stage_timeout_seconds,
                stop,
                retries=retries,
            )
        except StopRequestedError:
            raise
        except Exception as exc:  # noqa: BLE001 - the outcome of every series built from it
            return Ingested(raw, exc, round(meter.waited_seconds, 3))
    return Ingested(raw, None, round(meter.waited_seconds, 3))


class IngestOnce:
    """Ingests each raw series at most once per cycle; later series built from it reuse the
    outcome (a failed ingest fails every series that depends on it, with the same reason)."""

    def __init__(
        self,
        stages: Stages,
        settings: Settings,
        stop: threading.Event,
        budget: ratelimit.CallBudget | None = None,
    ) -> None:
        self.stages, self.settings, self.stop, self.budget = stages, settings, stop, budget
        self.done: dict[SeriesId, Ingested] = {}

    def __call__(self, series: SeriesId) -> None:
        raw = series.raw
        if raw in self.done:
            logger.debug("%s: %s was ingested earlier in this cycle", series.name, raw.name)
        else:
            self.done[raw] = ingest_raw(
                self.stages.ingest, raw, self.settings, self.stop, self.budget
            )
        self.done[raw].check(series)

    def waited(self, series: SeriesId) -> float:
        """Seconds the ingest of ``series``' raw file waited for the call budget."""
        done = self.done.get(series.raw)
        return done.waited_seconds if done is not None else 0.0

    @property
    def waited_seconds(self) -> float:
        return round(sum(done.waited_seconds for done in self.done.values()), 3)


def run_series(
    series: SeriesId,
    settings: Settings,
    stages: Stages,
    models: Sequence[str],
    stop: threading.Event,
    ingest: Callable[[SeriesId], None] | None = None,
) -> SeriesOutcome:
    """Ingest (through ``ingest``, shared over a cycle), process, train, gate and promote one
    series. Never raises: a failure is the outcome's status, stage and reason.

    BLAS runs one thread meanwhile, as in a Dask worker (which sets ``OMP_NUM_THREADS=1``): a
    multi-threaded BLAS sums in another order, and the fits would differ in the last digits
    between this process and a cluster.
    """
    from pipeline.forecasters.arima_state_space import single_blas_thread

    with single_blas_thread():
        return _run_series(series, settings, stages, models, stop, ingest)


def _run_series(
    series: SeriesId,
    settings: Settings,
    stages: Stages,
    models: Sequence[str],
    stop: threading.Event,
    ingest: Callable[[SeriesId], None] | None,
) -> SeriesOutcome:
    started = time.monotonic()
    ingest = ingest or IngestOnce(stages, settings, stop)
    outcome = SeriesOutcome(series=series.name, status="failed")
    store = ArtifactStore(Path(settings.models_dir))
    timeout = settings.stage_timeout_seconds
    stage = "ingest"
    try:
        ingest(series)
        stage = "process"
        run_stage("process", lambda: stages.process(series, settings), timeout, stop)
        stage = "train"
        result = run_stage("train", lambda: stages.train(series, settings, models), timeout, stop)
        stage = "gate"
        if not getattr(result, "versions", None):
            failures = getattr(result, "failures", {})
            raise PipelineError(f"no candidate model was trained: {failures}")
        serving = store.champion(series)
        serving_model = serving.model if serving is not None else None
        if serving is not None:
            outcome.serving = f"{serving.model}/{serving.version}"
        decision = run_stage(
            "gate", lambda: stages.gate(series, settings, result, serving_model), timeout, stop
        )
        # The forecast ledger's live figures beside the backtest (never raises).
        live = live_promotion(series, settings, decision, serving_model, result.versions)
        decision = live.decision
        outcome.reason = decision.reason
        outcome.candidate = decision.candidate
        outcome.metrics = dict(decision.summary.get(decision.candidate, {}))
        if live.figures:
            outcome.metrics[LIVE_KEY] = live.figures
        if stop.is_set():
            raise StopRequestedError("stop requested before promotion")
        meta = result.versions.get(decision.candidate)
        if decision.passed and meta is None:
            decision.passed = False
            outcome.reason = f"{decision.candidate} won the gate but has no trained version"
        if decision.passed and meta is not None:
            stage = "promote"
            outcome.version = meta.version
            store.promote(
                series, decision.candidate, meta.version, reason=f"scheduler: {decision.reason}"
            )
            outcome.status = "promoted"
        elif (first := bootstrap(decision, serving_model, result.versions)) is not None:
            stage = "promote"
            first_meta = result.versions[first.candidate]
            outcome.reason = first.reason
            store.promote(
                series, first.candidate, first_meta.version, reason=f"scheduler: {first.reason}"
            )
            outcome.candidate, outcome.version = first.candidate, first_meta.version
            outcome.metrics = dict(first.summary.get(first.candidate, {}))
            outcome.status = "promoted"
        else:
            outcome.status = "rejected"
        outcome.stage = None
    except StopRequestedError as exc:
        outcome.status, outcome.stage, outcome.reason = "stopped", stage, str(exc)
    except Exception as exc:  # noqa: BLE001 - one series failing must not stop the others
        outcome.status, outcome.stage, outcome.reason = "failed", stage, f"{stage}: {exc}"
        logger.error("%s failed at %s: %s", series.name, stage, exc, extra={"series": series.name})
    outcome.seconds = round(time.monotonic() - started, 3)
    return outcome


def log_outcome(run_id: str, outcome: SeriesOutcome) -> None:
    logger.info(
        "%s: %s (%s)",
        outcome.series,
        outcome.status,
        outcome.reason,
        extra={"run_id": run_id, "series": outcome.series},
    )


def run_cycle(
    settings: Settings,
    *,
    stages: Stages | None = None,
    models: Sequence[str] | None = None,
    stop: threading.Event | None = None,
    series_list: Sequence[SeriesId] | None = None,
    cluster: Cluster | None = None,
) -> CycleRecord:
    """Run one locked cycle over every configured series, record it and export metrics.

    With ``cluster`` every series is one task on that Dask cluster (its ingest, shared with the
    series built from the same raw file, another), and the outcomes come back here; without,
    the series run one after the other in this process. Either way CoinGecko calls share one
    call budget (``COINGECKO_CALLS_PER_MINUTE``). Raises
    :class:`~pipeline.scheduling.history.LockBusyError` (having done nothing) when another
    cycle holds the lock.
    """
    from pipeline.forecasters import parse_models

    stop = stop or threading.Event()
    with cycle_lock(settings):
        stages = stages or default_stages()
        models = list(models) if models else parse_models(None)
        before_read(settings)  # s3:// folders: pull the models and data this cycle reads
        started = time.monotonic()
        record = CycleRecord(run_id=uuid.uuid4().hex[:12], started_at=datetime.now(UTC).isoformat())
        logger.info("retraining cycle %s started", record.run_id, extra={"run_id": record.run_id})
        todo = list(series_list or settings.series())
        if cluster is not None:
            record.executor = cluster.address
            record.series, record.ingest_wait_seconds = cluster.run_cycle_series(
                todo, settings, stages, models, stop, record.run_id
            )
        else:
            ingest = IngestOnce(stages, settings, stop, ratelimit.budget_for(settings))
            for series in todo:
                if stop.is_set():
                    record.series.append(
                        SeriesOutcome(series.name, "stopped", "stop requested before this series")
                    )
                    continue
                outcome = run_series(series, settings, stages, models, stop, ingest)
                outcome.ingest_wait_seconds = ingest.waited(series)
                record.series.append(outcome)
                log_outcome(record.run_id, outcome)
            record.ingest_wait_seconds = ingest.waited_seconds
        record.conclude()
        trained = {o.series for o in record.series if o.status in ("promoted", "rejected")}
        record.ledger_recorded = update_ledger(settings, [s for s in todo if s.name in trained])
        if record.promoted:
            record.reloaded_api = notify_api(settings)
        record.ended_at = datetime.now(UTC).isoformat()
        record.duration_seconds = round(time.monotonic() - started, 3)
        after_run(settings)  # an s3:// REPORTS_DIR: publish the reports written
        append_history(settings, record)
        write_metrics_file(settings)
        alert_if_needed(settings, record)
        logger.info(
            "retraining cycle %s ended: %s in %.1f s (on %s; ingest waited %.1f s for the "
            "CoinGecko call budget)",
            record.run_id,
            record.status,
            record.duration_seconds,
            record.executor,
            record.ingest_wait_seconds,
            extra={"run_id": record.run_id},
        )
        return record
