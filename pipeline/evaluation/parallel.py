"""Running backtest fits in parallel: joblib on local processes (loky) or on a Dask cluster.

The (model x origin-group) fits of a backtest are independent. :func:`plan` cuts them into
groups (one fit per ``refit_every`` origins, slow models first for a better load balance) and
:func:`execute` runs every group with joblib: on local worker processes (``backend="loky"``) or
on a Dask cluster (``backend="dask"``, joblib's Dask backend over ``dask.distributed``; a local
cluster is started when no scheduler address is given). Each call ships only the points its
group can use. Progress is a tqdm bar on a terminal and log lines at ~10% steps otherwise.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
from joblib import Parallel, delayed, parallel_config

from pipeline.errors import UsageError
from pipeline.evaluation.folds import FoldResult, ModelSpec, model_complexity, model_name, run_group
from pipeline.evaluation.protocol import BacktestProtocol

logger = logging.getLogger(__name__)

#: Where the fits run: local worker processes, or a Dask cluster.
BACKENDS = ("loky", "dask")


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}: use {' or '.join(BACKENDS)}")


@dataclass
class Group:
    """One fit: a model, its parameters and the origins it forecasts (positions in the series)."""

    spec: ModelSpec
    params: dict[str, Any]
    positions: list[int]


def plan(
    specs: Sequence[ModelSpec],
    params: Mapping[str, Mapping[str, Any]],
    positions: Sequence[int],
    refit_every: int,
) -> list[Group]:
    """One group per model and run of ``refit_every`` origins, the slowest models first."""
    groups = []
    for spec in specs:
        name = model_name(spec)
        for i in range(0, len(positions), refit_every):
            chunk = list(positions[i : i + refit_every])
            groups.append(Group(spec, dict(params.get(name, {})), chunk))
    # Slow models first: better load balance across workers.
    groups.sort(key=lambda g: -model_complexity(g.spec))
    return groups


@contextmanager
def dask_client(scheduler: str | None, n_jobs: int) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, or of a local cluster of ``n_jobs`` workers."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - dask is a runtime requirement
        raise UsageError(
            "--backend dask needs dask[distributed]: pip install 'dask[distributed]'"
        ) from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    workers = n_jobs if n_jobs > 0 else None
    with (
        # Any free port for the dashboard (logged below): two local clusters never collide.
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        logger.info("started a local Dask cluster: %s", client.dashboard_link)
        yield client


def execute(
    groups: Sequence[Group],
    y: pd.Series,
    protocol: BacktestProtocol,
    *,
    n_jobs: int,
    backend: str,
    scheduler: str | None,
    progress: bool,
) -> list[FoldResult]:
    """Run every group; results come back in any order."""
    check_backend(backend)
    total = sum(len(g.positions) for g in groups)

    def calls() -> Iterable[Any]:
        for g in groups:
            # Ship only the points this group can use (training window + horizon).
            lo = max(0, g.positions[0] - protocol.train_window) if protocol.train_window else 0
            hi = g.positions[-1] + protocol.horizon
            shifted = [p - lo for p in g.positions]
            yield delayed(run_group)(
                g.spec,
                g.params,
                y.iloc[lo:hi],
                shifted,
                protocol.horizon,
                protocol.train_window,
                protocol.levels,
            )

    def consume(parallel: Parallel) -> list[FoldResult]:
        out: list[FoldResult] = []
        bar = Progress(total, progress)
        for chunk in parallel(calls()):
            out.extend(chunk)
            bar(len(chunk))
        return out

    if backend == "dask":
        with dask_client(scheduler, n_jobs), parallel_config(backend="dask"):
            return consume(Parallel(n_jobs=-1, return_as="generator_unordered"))
    with parallel_config(backend="loky", n_jobs=n_jobs):
        return consume(Parallel(return_as="generator_unordered"))


class Progress:
    """A progress bar on a terminal (tqdm), log lines at ~10% steps otherwise."""

    def __init__(self, total: int, bar: bool) -> None:
        self.total, self.done, self.next_log = total, 0, 0.1
        self.bar: Any = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="fold", desc="backtest", file=sys.stderr, leave=False)

    def __call__(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if self.done >= self.total:
                self.bar.close()
            return
        if self.total and self.done / self.total >= self.next_log - 1e-9:
            logger.info("backtest progress: %d/%d folds", self.done, self.total)
            while self.next_log <= self.done / self.total + 1e-9:
                self.next_log += 0.1


__all__ = ["BACKENDS", "Group", "Progress", "check_backend", "dask_client", "execute", "plan"]
