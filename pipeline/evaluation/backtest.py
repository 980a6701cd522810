"""Rolling-origin backtests (time-series cross-validation), champion selection and the quality gate.

At each *origin* ``t`` a fresh forecaster is fitted on the points strictly before ``t`` (the last
``train_window`` of them, or all of them) and forecasts ``horizon`` steps starting at ``t``; those
are scored against the actuals. The (model x origin-group) fits run in parallel with joblib: on
local processes (``backend="loky"``) or on a Dask cluster (``backend="dask"``, joblib's Dask backend
over ``dask.distributed``). With ``refit_every=k`` a model is fitted at every k-th origin only and
the origins in between are forecast by that fit, further ahead (it never sees newer data: no leak).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config

from pipeline.errors import ForecastError, UsageError
from pipeline.evaluation.metrics import (
    METRIC_KEYS,
    direction,
    forecast_metrics,
    naive_scale,
    winkler_score,
)
from pipeline.forecasters import Forecaster, forecaster_class, make_forecaster
from pipeline.forecasters.base import DEFAULT_LEVELS
from pipeline.series import freq_offset

logger = logging.getLogger(__name__)

#: A model to backtest: a registry name ("arima") or a Forecaster subclass.
ModelSpec = str | type[Forecaster]

BACKENDS = ("loky", "dask")

#: Per-frequency defaults: (horizon steps, spacing of origins, number of origins).
FREQ_DEFAULTS: dict[str, tuple[int, str, int]] = {
    "1d": (30, "30D", 24),  # monthly origins over the last two years, 30-day horizon
    "4h": (42, "7D", 26),  # weekly origins over the last half year, 7-day horizon
    "1h": (24, "7D", 12),  # weekly origins over the last quarter, 24-hour horizon
}

#: Fields of the per-step rows kept for every fold (``folds.csv``).
FOLD_COLUMNS = ["origin", "model", "ds", "step", "actual", "mean"]


def format_step(step: pd.Timedelta) -> str:
    """``30D``, ``7D``, ``168h`` or ``90min``: a compact, re-parseable spacing."""
    seconds = int(step.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400}D"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}min"


def parse_step(text: str | pd.Timedelta) -> pd.Timedelta:
    try:
        step = pd.Timedelta(text)
    except (ValueError, TypeError):
        raise UsageError(f"invalid --step {text!r}: use a duration like 30D, 7D or 168h") from None
    if step <= pd.Timedelta(0):
        raise UsageError(f"--step must be positive, got {text!r}")
    return step


def parse_time(text: str | pd.Timestamp, what: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise UsageError(f"invalid {what} {text!r}: use a date like 2021-06-01") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@dataclass(frozen=True)
class BacktestProtocol:
    """Where the origins are, how far ahead to forecast and how much history each fit sees."""

    freq: str
    horizon: int
    step: pd.Timedelta
    start: pd.Timestamp
    end: pd.Timestamp
    train_window: int | None = None
    refit_every: int = 1
    levels: tuple[int, ...] = DEFAULT_LEVELS

    def __post_init__(self) -> None:
        freq_offset(self.freq)
        if self.horizon < 1:
            raise UsageError(f"--horizon must be >= 1, got {self.horizon}")
        if self.refit_every < 1:
            raise UsageError(f"--refit-every must be >= 1, got {self.refit_every}")
        if self.train_window is not None and self.train_window < 2:
            raise UsageError(f"--train-window must be >= 2 points, got {self.train_window}")
        if self.end < self.start:
            raise UsageError(f"--end {self.end} is before --start {self.start}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "freq": self.freq,
            "horizon": self.horizon,
            "step": format_step(self.step),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "train_window": self.train_window,
            "refit_every": self.refit_every,
            "levels": list(self.levels),
            "window": "sliding" if self.train_window else "expanding",
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BacktestProtocol:
        return cls(
            freq=str(data["freq"]),
            horizon=int(data["horizon"]),
            step=parse_step(str(data["step"])),
            start=parse_time(str(data["start"]), "start"),
            end=parse_time(str(data["end"]), "end"),
            train_window=None if data.get("train_window") is None else int(data["train_window"]),
            refit_every=int(data.get("refit_every", 1)),
            levels=tuple(int(v) for v in data.get("levels", DEFAULT_LEVELS)),
        )


def default_protocol(
    freq: str,
    index: pd.DatetimeIndex,
    *,
    horizon: int | None = None,
    step: str | pd.Timedelta | None = None,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    n_origins: int | None = None,
    train_window: int | None = None,
    refit_every: int = 1,
) -> BacktestProtocol:
    """The protocol for ``freq`` with any of its parts overridden.

    By default the last origin is the latest one whose whole horizon has actuals, and the first
    lies ``n_origins - 1`` steps before it (daily: 24 monthly origins, i.e. the last two years).
    """
    if freq not in FREQ_DEFAULTS:
        raise UsageError(f"no backtest defaults for frequency {freq!r}")
    if len(index) == 0:
        raise UsageError("the series is empty: nothing to evaluate")
    d_h, d_step, d_n = FREQ_DEFAULTS[freq]
    h = d_h if horizon is None else horizon
    if h < 1:
        raise UsageError(f"--horizon must be >= 1, got {h}")
    spacing = parse_step(step or d_step)
    last_end = index[-1] - (h - 1) * freq_offset(freq)
    stop = parse_time(end, "--end") if end is not None else last_end
    if start is not None:
        first = parse_time(start, "--start")
    else:
        count = d_n if n_origins is None else n_origins
        if count < 1:
            raise UsageError(f"--origins must be >= 1, got {count}")
        first = stop - (count - 1) * spacing
    return BacktestProtocol(freq, h, spacing, first, stop, train_window, refit_every)


def make_origins(
    index: pd.DatetimeIndex, protocol: BacktestProtocol, min_train: int = 2
) -> list[int]:
    """Positions in ``index`` of the origins: the first point at or after each scheduled time.

    Origins without a full horizon of actuals, or with fewer than ``min_train`` points before
    them, are dropped.
    """
    positions: list[int] = []
    when = protocol.start
    while when <= protocol.end:
        pos = int(index.searchsorted(when, side="left"))
        if pos >= min_train and pos + protocol.horizon <= len(index) and pos not in positions:
            positions.append(pos)
        when = when + protocol.step
    return positions


# -- one unit of work --------------------------------------------------------------------------
@dataclass
class FoldResult:
    """The outcome of one (model, origin): forecast rows, metrics, fit time, or an error."""

    model: str
    origin: pd.Timestamp
    refit: bool
    n_train: int
    train_start: pd.Timestamp
    fit_seconds: float
    rows: pd.DataFrame | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def _new_forecaster(spec: ModelSpec, params: Mapping[str, Any]) -> Forecaster:
    if isinstance(spec, str):
        return make_forecaster(spec, **params)
    return spec(**params)


def model_name(spec: ModelSpec) -> str:
    return spec if isinstance(spec, str) else spec.name


def model_complexity(spec: ModelSpec) -> int:
    if isinstance(spec, str):
        try:
            return forecaster_class(spec).complexity
        except (UsageError, ImportError):
            return 100
    return spec.complexity


def run_group(
    spec: ModelSpec,
    params: Mapping[str, Any],
    y: pd.Series,
    positions: Sequence[int],
    horizon: int,
    train_window: int | None,
    levels: Sequence[int] = DEFAULT_LEVELS,
) -> list[FoldResult]:
    """Fit once at ``positions[0]`` (on points strictly before it) and forecast every origin.

    ``y`` is the part of the series this group needs. Runs in a worker process.
    """
    name = model_name(spec)
    first = positions[0]
    lo = max(0, first - train_window) if train_window else 0
    train = y.iloc[lo:first].copy()  # a copy: the model cannot reach any later point
    results: list[FoldResult] = []
    t0 = time.perf_counter()
    try:
        model = _new_forecaster(spec, params).fit(train)
    except Exception as exc:  # any model failure is recorded, not fatal
        seconds = time.perf_counter() - t0
        msg = f"{type(exc).__name__}: {exc}"
        return [
            FoldResult(name, y.index[p], p == first, len(train), train.index[0], seconds, error=msg)
            for p in positions
        ]
    seconds = time.perf_counter() - t0
    for pos in positions:
        origin = y.index[pos]
        lo_pos = max(0, pos - train_window) if train_window else 0
        seen = y.iloc[lo_pos:pos]  # what a model refitted at this origin would see (for scaling)
        ahead = pos - first
        try:
            path = model.predict(ahead + horizon, levels).iloc[ahead:].reset_index(drop=True)
            actual = y.iloc[pos : pos + horizon]
            if not path["ds"].equals(pd.Series(actual.index, name="ds")):
                raise ForecastError(
                    f"{name}: forecast timestamps do not match the series at {origin} "
                    "(is the series on a regular grid?)"
                )
            metrics = forecast_metrics(actual.to_numpy(), path, seen, levels)
        except Exception as exc:
            results.append(
                FoldResult(
                    name,
                    origin,
                    pos == first,
                    len(train),
                    train.index[0],
                    seconds,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            continue
        rows = path.copy()
        rows.insert(0, "step", np.arange(1, horizon + 1))
        rows.insert(2, "actual", actual.to_numpy())
        rows["scale"] = naive_scale(seen)
        rows["last_price"] = float(seen.iloc[-1])
        results.append(
            FoldResult(
                name,
                origin,
                pos == first,
                len(train),
                train.index[0],
                seconds if pos == first else 0.0,
                rows,
                metrics,
            )
        )
    return results


# -- running many of them --------------------------------------------------------------------
@dataclass
class BacktestResult:
    """Everything a backtest produced."""

    series: str
    protocol: BacktestProtocol
    models: list[str]
    complexity: dict[str, int]
    folds: pd.DataFrame  # one row per (origin, model, step): the forecasts and actuals
    fold_metrics: pd.DataFrame  # one row per (origin, model): metrics and fit time
    failures: dict[str, list[str]]  # model -> "origin: error" for each failed fold
    origins: list[pd.Timestamp]
    elapsed_seconds: float = 0.0

    def summary(self) -> dict[str, dict[str, float]]:
        """Per model: every metric averaged over folds, mean fit time, folds and failures."""
        out: dict[str, dict[str, float]] = {}
        for name in self.models:
            part = self.fold_metrics[self.fold_metrics["model"] == name]
            ok = part[part["error"].isna()]
            row = {k: float(ok[k].mean()) if len(ok) else float("nan") for k in METRIC_KEYS}
            fits = ok[ok["refit"]]["fit_seconds"]
            row["fit_seconds"] = float(fits.mean()) if len(fits) else float("nan")
            row["n_folds"] = float(len(ok))
            row["failed_folds"] = float(len(part) - len(ok))
            row["complexity"] = float(self.complexity.get(name, 100))
            out[name] = row
        return out

    def by_horizon(self) -> pd.DataFrame:
        """Per model and step: metrics pooled over origins (MASE = mean of |error| / scale)."""
        return horizon_metrics(self.folds, self.protocol.levels)


def horizon_metrics(folds: pd.DataFrame, levels: Sequence[int] = DEFAULT_LEVELS) -> pd.DataFrame:
    """Metrics by (model, step) from per-step fold rows (also works on a re-read ``folds.csv``)."""
    if folds.empty:
        return pd.DataFrame(columns=["model", "step", *METRIC_KEYS])
    y = folds["actual"].to_numpy(float)
    f = folds["mean"].to_numpy(float)
    p = folds["last_price"].to_numpy(float)
    err = np.abs(y - f)
    parts: dict[str, Any] = {
        "model": folds["model"],
        "step": folds["step"],
        "mae": err,
        "sq": (y - f) ** 2,
        "mape": 100 * err / np.abs(y),
        "smape": 100 * 2 * err / (np.abs(y) + np.abs(f)),
        "mase": err / folds["scale"].to_numpy(float),
        "directional_accuracy": (direction(f, p) == np.sign(y - p)).astype(float),
    }
    for level in sorted(levels):
        lo = folds[f"lower_{level}"].to_numpy(float)
        hi = folds[f"upper_{level}"].to_numpy(float)
        parts[f"coverage_{level}"] = ((y >= lo) & (y <= hi)).astype(float)
        parts[f"width_{level}"] = hi - lo
        parts[f"winkler_{level}"] = winkler_score(y, lo, hi, level)
    table = pd.DataFrame(parts).groupby(["model", "step"], sort=True).mean().reset_index()
    table.insert(3, "rmse", np.sqrt(table.pop("sq")))
    return table


@dataclass
class _Group:
    spec: ModelSpec
    params: dict[str, Any]
    positions: list[int]


def _plan(
    specs: Sequence[ModelSpec],
    params: Mapping[str, Mapping[str, Any]],
    positions: Sequence[int],
    refit_every: int,
) -> list[_Group]:
    groups = []
    for spec in specs:
        name = model_name(spec)
        for i in range(0, len(positions), refit_every):
            chunk = list(positions[i : i + refit_every])
            groups.append(_Group(spec, dict(params.get(name, {})), chunk))
    # Slow models first: better load balance across workers.
    groups.sort(key=lambda g: -model_complexity(g.spec))
    return groups


@contextmanager
def _dask_client(scheduler: str | None, n_jobs: int) -> Iterator[Any]:
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
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        logger.info("started a local Dask cluster: %s", client.dashboard_link)
        yield client


def _execute(
    groups: Sequence[_Group],
    y: pd.Series,
    protocol: BacktestProtocol,
    *,
    n_jobs: int,
    backend: str,
    scheduler: str | None,
    progress: bool,
) -> list[FoldResult]:
    """Run every group; results come back in any order."""
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
        bar = _Progress(total, progress)
        for chunk in parallel(calls()):
            out.extend(chunk)
            bar(len(chunk))
        return out

    if backend == "loky":
        with parallel_config(backend="loky", n_jobs=n_jobs):
            return consume(Parallel(return_as="generator_unordered"))
    if backend == "dask":
        with _dask_client(scheduler, n_jobs), parallel_config(backend="dask"):
            return consume(Parallel(n_jobs=-1, return_as="generator_unordered"))
    raise UsageError(f"unknown backend {backend!r}: use {' or '.join(BACKENDS)}")


class _Progress:
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


def run_backtest(
    y: pd.Series,
    models: Sequence[ModelSpec],
    protocol: BacktestProtocol,
    *,
    series: str = "",
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    progress: bool | None = None,
) -> BacktestResult:
    """Backtest ``models`` on the price series ``y`` under ``protocol``.

    Raises :class:`UsageError` when the protocol leaves no origin with enough data.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}: use {' or '.join(BACKENDS)}")
    if not models:
        raise UsageError("no models to evaluate")
    names = [model_name(m) for m in models]
    if len(set(names)) != len(names):
        raise UsageError(f"duplicate models in {names}")
    min_train = max((_min_points(m) for m in models), default=2)
    if protocol.train_window is not None and protocol.train_window < min_train:
        raise UsageError(
            f"--train-window {protocol.train_window} is below the {min_train} points "
            "some model needs"
        )
    positions = make_origins(y.index, protocol, min_train=max(min_train, 2))
    if not positions:
        raise UsageError(
            f"no usable origin between {protocol.start} and {protocol.end} for {series or 'the'} "
            f"series ({len(y)} points from {y.index[0] if len(y) else '-'} to "
            f"{y.index[-1] if len(y) else '-'}): each origin needs {min_train} points before it "
            f"and {protocol.horizon} after it"
        )
    groups = _plan(models, model_params or {}, positions, protocol.refit_every)
    logger.info(
        "backtesting %s: %d models x %d origins (%d fits), horizon %d, backend %s",
        series or "series",
        len(names),
        len(positions),
        len(groups),
        protocol.horizon,
        backend,
        extra={"series": series},
    )
    t0 = time.perf_counter()
    results = _execute(
        groups,
        y,
        protocol,
        n_jobs=n_jobs,
        backend=backend,
        scheduler=scheduler,
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    elapsed = time.perf_counter() - t0
    return _collect(series, protocol, models, results, [y.index[p] for p in positions], elapsed)


def _min_points(spec: ModelSpec) -> int:
    if isinstance(spec, str):
        return forecaster_class(spec).min_points
    return spec.min_points


def _collect(
    series: str,
    protocol: BacktestProtocol,
    models: Sequence[ModelSpec],
    results: Sequence[FoldResult],
    origins: list[pd.Timestamp],
    elapsed: float,
) -> BacktestResult:
    order = {model_name(m): i for i, m in enumerate(models)}
    results = sorted(results, key=lambda r: (order[r.model], r.origin))
    rows, metric_rows = [], []
    failures: dict[str, list[str]] = {}
    for r in results:
        metric_rows.append(
            {
                "origin": r.origin,
                "model": r.model,
                "refit": r.refit,
                "n_train": r.n_train,
                "train_start": r.train_start,
                "fit_seconds": r.fit_seconds,
                "error": r.error,
                **{k: r.metrics.get(k, float("nan")) for k in METRIC_KEYS},
            }
        )
        if r.error is not None:
            failures.setdefault(r.model, []).append(f"{r.origin.isoformat()}: {r.error}")
            logger.warning("%s failed at origin %s: %s", r.model, r.origin, r.error)
        elif r.rows is not None:
            part = r.rows.copy()
            part.insert(0, "model", r.model)
            part.insert(0, "origin", r.origin)
            rows.append(part)
    folds = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=FOLD_COLUMNS)
    fold_metrics = pd.DataFrame(metric_rows)
    fold_metrics["error"] = fold_metrics["error"].astype(object)
    return BacktestResult(
        series=series,
        protocol=protocol,
        models=[model_name(m) for m in models],
        complexity={model_name(m): model_complexity(m) for m in models},
        folds=folds,
        fold_metrics=fold_metrics,
        failures=failures,
        origins=origins,
        elapsed_seconds=elapsed,
    )


def ensure_naive(models: Sequence[str]) -> list[str]:
    """The naive baseline always competes: add it first when missing."""
    names = list(models)
    return names if "naive" in names else ["naive", *names]


__all__ = [
    "BACKENDS",
    "BacktestProtocol",
    "BacktestResult",
    "FoldResult",
    "default_protocol",
    "ensure_naive",
    "horizon_metrics",
    "make_origins",
    "run_backtest",
    "run_group",
]
