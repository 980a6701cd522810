"""The precomputed summaries of a series' scores (table ``aggregates``).

For every model of a series, every window and every step (``step`` 0 = all steps pooled):

* ``n`` scored points; ``coverage_80/95`` (share inside) with a Wilson score interval
  (``coverage_L_low``/``_high``, 95% confidence); mean ``width_80/95``, ``winkler_80/95``, ``wis``;
  ``mase`` (mean scaled error) and ``bias`` (mean of median - actual, price units);
* ``<key>_ratio`` for the widths, Winkler scores, WIS and MASE: the model's mean over naive's
  on the points both forecast (the same origin and step), and ``n_paired`` of those points.
  Naive is issued with every other model, so the comparison is always paired.

Windows (:data:`WINDOWS`) end at ``as_of``, the newest scored ``ds`` of the series (not the
wall clock, so a replayed history has windows too): ``7d``, ``30d``, ``90d`` and ``all``.
:func:`refresh_aggregates` replaces the series' rows in the caller's transaction, so a reader
sees the old summaries or the new ones, never a mix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, delete, select

from pipeline.evaluation.champion import BASELINE_MODEL
from pipeline.ledger.record import utc
from pipeline.ledger.rows import as_times, insert_frame, paused_gc, raw_time
from pipeline.ledger.schema import RATIO_KEYS, aggregates, scores

#: Window name -> days (``None``: every scored point).
WINDOWS: dict[str, int | None] = {"7d": 7, "30d": 30, "90d": 90, "all": None}
#: The confidence of the coverage intervals.
COVERAGE_CONFIDENCE = 0.95
_Z = 1.959963984540054  # the 97.5% normal quantile
_DAY_NS = 86_400 * 10**9

#: Summary column -> the per-point score column it averages.
_MEANS = {
    "coverage_80": "inside_80",
    "coverage_95": "inside_95",
    "width_80": "width_80",
    "width_95": "width_95",
    "winkler_80": "winkler_80",
    "winkler_95": "winkler_95",
    "wis": "wis",
    "mase": "scaled_error",
    "bias": "error",
}
_POINT_COLUMNS = sorted(set(_MEANS.values()))


def wilson_interval(k: np.ndarray, n: np.ndarray, z: float = _Z) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion ``k / n`` (``nan`` where ``n`` is 0)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def _fetch(conn: Connection, series: str) -> dict[str, Any]:
    """The scores of ``series`` as columns (``model`` a tuple of names, times UTC indexes)."""
    cols = [scores.c.model, raw_time(scores.c.origin), scores.c.step, raw_time(scores.c.ds)]
    cols += [scores.c[c] for c in _POINT_COLUMNS]
    rows = conn.execute(select(*cols).where(scores.c.series == series)).all()
    data = list(zip(*rows, strict=True)) if rows else [() for _ in cols]
    return {
        "model": data[0],
        "origin": as_times(data[1]),
        "step": np.array(data[2], dtype=np.int64),
        "ds": as_times(data[3]),
        **{name: np.array(data[4 + i], dtype=float) for i, name in enumerate(_POINT_COLUMNS)},
    }


def read_scores(conn: Connection, series: str) -> pd.DataFrame:
    columns = _fetch(conn, series)
    return pd.DataFrame({**columns, "model": pd.Series(columns["model"], dtype=str)})


@dataclass(frozen=True)
class _Points:
    """A series' scores as arrays, coded once: ``model`` indexes ``models`` (sorted), ``pair``
    numbers the distinct (origin, step) points (``pairs`` of them), and ``block`` says which
    of ``blocks`` windows a point is summarised in (a point appears once per window)."""

    models: np.ndarray
    model: np.ndarray
    step: np.ndarray
    width: int  # group code = model * width + step
    pair: np.ndarray
    pairs: int
    ds: np.ndarray  # int64 nanoseconds
    values: dict[str, np.ndarray]
    block: np.ndarray
    blocks: int = 1

    @classmethod
    def of(cls, columns: Mapping[str, Any]) -> _Points:
        """From :func:`read_scores`' frame or :func:`_fetch`'s columns."""
        codes, names = pd.factorize(np.asarray(columns["model"], dtype=object))
        order = np.argsort(np.asarray(names, dtype=str))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))  # model = its index among the sorted names
        models = np.asarray(names, dtype=str)[order]
        step = np.asarray(columns["step"], dtype=np.int64)
        width = int(step.max()) + 1
        origin = pd.factorize(_nanoseconds(columns["origin"]))[0]
        pair, uniques = pd.factorize(origin.astype(np.int64) * width + step)
        ds = _nanoseconds(columns["ds"])
        values = {c: np.asarray(columns[c], dtype=float) for c in _POINT_COLUMNS}
        block = np.zeros(len(step), dtype=np.int64)
        return cls(models, rank[codes], step, width, pair, len(uniques), ds, values, block)

    def windows(self, masks: Sequence[np.ndarray]) -> _Points:
        """The points inside each of ``masks`` in turn (in their order), block = mask index."""
        rows = [np.flatnonzero(mask) for mask in masks]
        take = np.concatenate(rows)
        return replace(
            self,
            model=self.model[take],
            step=self.step[take],
            pair=self.pair[take],
            ds=self.ds[take],
            values={c: v[take] for c, v in self.values.items()},
            block=np.repeat(np.arange(len(rows)), [len(r) for r in rows]),
            blocks=len(rows),
        )


def _nanoseconds(times: Any) -> np.ndarray:
    """UTC times (an aware index or series) as int64 nanoseconds since the epoch."""
    return np.asarray(pd.DatetimeIndex(times).as_unit("ns").asi8, dtype=np.int64)


def _group_means(
    codes: np.ndarray, values: np.ndarray, groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per group code: the sum and the count of the finite ``values``."""
    ok = np.isfinite(values)
    sums = np.bincount(codes[ok], weights=values[ok], minlength=groups)
    return sums, np.bincount(codes[ok], minlength=groups).astype(float)


def summarize(frame: pd.DataFrame, reference: str = BASELINE_MODEL) -> pd.DataFrame:
    """One row per (model, step) with step 0 = all steps: the columns of ``aggregates`` but
    the series, window and timestamps (grouped sums with ``numpy.bincount``: a refresh of a
    year of hourly scores takes milliseconds, not seconds)."""
    return _summarize(_Points.of(frame), reference).drop(columns="block")


def _summarize(points: _Points, reference: str = BASELINE_MODEL) -> pd.DataFrame:
    """:func:`summarize` of every block at once (one group per block, model and step): each
    group sums its points in their order, so a block gives what it would alone."""
    width, models = points.width, points.models
    cells = len(models) * width
    groups = points.blocks * cells
    cell = points.block * cells + points.model * width
    codes = np.concatenate([cell, cell + points.step])  # pooled, per step
    out: dict[str, np.ndarray] = {"n": np.bincount(codes, minlength=groups).astype(float)}
    with np.errstate(divide="ignore", invalid="ignore"):
        for key, col in _MEANS.items():
            sums, counts = _group_means(codes, np.tile(points.values[col], 2), groups)
            out[key] = sums / counts
            if key.startswith("coverage_"):
                out[f"{key}_low"], out[f"{key}_high"] = wilson_interval(sums, counts)
        out.update(_paired(points, codes, groups, reference))
    table = pd.DataFrame(out)
    group = np.arange(groups)
    table.insert(0, "step", group % width)
    table.insert(0, "model", models[(group // width) % len(models)])
    table.insert(0, "block", group // cells)
    return table[table["n"] > 0].reset_index(drop=True)


def _paired(
    points: _Points, codes: np.ndarray, groups: int, reference: str
) -> dict[str, np.ndarray]:
    """``n_paired`` and ``<key>_ratio`` per group code: the sum of a model's scores over the
    sum of ``reference``'s mean score at the same (origin, step) in the same block, on the
    points both have."""
    out: dict[str, np.ndarray] = {}
    if reference not in points.models:
        out["n_paired"] = np.zeros(groups)
        out.update({f"{k}_ratio": np.full(groups, np.nan) for k in RATIO_KEYS})
        return out
    key = points.block * points.pairs + points.pair
    is_ref = points.model == int(np.searchsorted(points.models, reference))
    for ratio_key in RATIO_KEYS:
        values = points.values[_MEANS.get(ratio_key, ratio_key)]
        ref_sum, ref_count = _group_means(key[is_ref], values[is_ref], points.blocks * points.pairs)
        ref = (ref_sum / ref_count)[key]  # naive's score at each row's point (nan: none)
        both = np.tile(np.isfinite(values) & np.isfinite(ref), 2)
        pair_codes = codes[both]
        num = np.bincount(pair_codes, weights=np.tile(values, 2)[both], minlength=groups)
        den = np.bincount(pair_codes, weights=np.tile(ref, 2)[both], minlength=groups)
        out[f"{ratio_key}_ratio"] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        if ratio_key == "wis":
            out["n_paired"] = np.bincount(pair_codes, minlength=groups).astype(float)
    return out


def refresh_aggregates(conn: Connection, series: str, now: datetime) -> int:
    """Recompute every aggregate row of ``series`` from its scores; returns the row count."""
    with paused_gc():
        return _refresh(conn, series, now)


def _refresh(conn: Connection, series: str, now: datetime) -> int:
    columns = _fetch(conn, series)
    conn.execute(delete(aggregates).where(aggregates.c.series == series))
    if not len(columns["step"]):
        return 0
    as_of = columns["ds"].max()
    points = _Points.of(columns)
    newest = int(points.ds.max())
    masks = [
        np.ones(len(points.ds), dtype=bool) if days is None else points.ds > newest - days * _DAY_NS
        for days in WINDOWS.values()
    ]
    table = _summarize(points.windows(masks))
    table.insert(0, "window", np.array(list(WINDOWS), dtype=object)[table.pop("block")])
    for col in ("step", "n", "n_paired"):
        table[col] = table[col].astype(int)
    extra = {"series": series, "as_of": utc(as_of), "refreshed_at": now}
    insert_frame(conn, aggregates, table, extra)
    return len(table)
