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

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection, delete, select

from pipeline.evaluation.champion import BASELINE_MODEL
from pipeline.ledger.record import utc
from pipeline.ledger.rows import as_times, bulk_insert, raw_time, records
from pipeline.ledger.schema import RATIO_KEYS, aggregates, scores

#: Window name -> days (``None``: every scored point).
WINDOWS: dict[str, int | None] = {"7d": 7, "30d": 30, "90d": 90, "all": None}
#: The confidence of the coverage intervals.
COVERAGE_CONFIDENCE = 0.95
_Z = 1.959963984540054  # the 97.5% normal quantile

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


def read_scores(conn: Connection, series: str) -> pd.DataFrame:
    cols = [scores.c.model, raw_time(scores.c.origin), scores.c.step, raw_time(scores.c.ds)]
    cols += [scores.c[c] for c in _POINT_COLUMNS]
    rows = conn.execute(select(*cols).where(scores.c.series == series)).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=[c.name for c in cols])
    frame["ds"] = as_times(frame["ds"])
    frame["origin"] = as_times(frame["origin"])
    frame[_POINT_COLUMNS] = frame[_POINT_COLUMNS].astype(float)
    return frame


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
    models, model_idx = np.unique(frame["model"].to_numpy(dtype=str), return_inverse=True)
    step = frame["step"].to_numpy(dtype=np.int64)
    width = int(step.max()) + 1
    groups = len(models) * width
    codes = np.concatenate([model_idx * width, model_idx * width + step])  # pooled, per step
    out: dict[str, np.ndarray] = {"n": np.bincount(codes, minlength=groups).astype(float)}
    with np.errstate(divide="ignore", invalid="ignore"):
        for key, col in _MEANS.items():
            sums, counts = _group_means(codes, np.tile(frame[col].to_numpy(float), 2), groups)
            out[key] = sums / counts
            if key.startswith("coverage_"):
                out[f"{key}_low"], out[f"{key}_high"] = wilson_interval(sums, counts)
        out.update(_paired(frame, codes, groups, models, reference))
    table = pd.DataFrame(out)
    table.insert(0, "step", np.arange(groups) % width)
    table.insert(0, "model", models[np.arange(groups) // width])
    return table[table["n"] > 0].reset_index(drop=True)


def _paired(
    frame: pd.DataFrame, codes: np.ndarray, groups: int, models: np.ndarray, reference: str
) -> dict[str, np.ndarray]:
    """``n_paired`` and ``<key>_ratio`` per group code: the sum of a model's scores over the
    sum of ``reference``'s mean score at the same (origin, step), on the points both have."""
    origin = frame["origin"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    step = frame["step"].to_numpy(dtype=np.int64)
    _, key = np.unique(np.stack([origin, step]), axis=1, return_inverse=True)
    key = key.ravel()
    is_ref = frame["model"].to_numpy(dtype=str) == reference
    out: dict[str, np.ndarray] = {}
    if reference not in models:
        out["n_paired"] = np.zeros(groups)
        out.update({f"{k}_ratio": np.full(groups, np.nan) for k in RATIO_KEYS})
        return out
    keys = int(key.max()) + 1
    for ratio_key in RATIO_KEYS:
        values = frame[_MEANS.get(ratio_key, ratio_key)].to_numpy(float)
        ref_sum, ref_count = _group_means(key[is_ref], values[is_ref], keys)
        ref = (ref_sum / ref_count)[key]  # naive's score at each row's point (nan: none)
        both = np.isfinite(values) & np.isfinite(ref)
        pair_codes = codes[np.tile(both, 2)]
        num = np.bincount(
            pair_codes, weights=np.tile(values, 2)[np.tile(both, 2)], minlength=groups
        )
        den = np.bincount(pair_codes, weights=np.tile(ref, 2)[np.tile(both, 2)], minlength=groups)
        out[f"{ratio_key}_ratio"] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        if ratio_key == "wis":
            out["n_paired"] = np.bincount(pair_codes, minlength=groups).astype(float)
    return out


def refresh_aggregates(conn: Connection, series: str, now: datetime) -> int:
    """Recompute every aggregate row of ``series`` from its scores; returns the row count."""
    frame = read_scores(conn, series)
    conn.execute(delete(aggregates).where(aggregates.c.series == series))
    if frame.empty:
        return 0
    as_of = frame["ds"].max()
    tables = []
    for window, days in WINDOWS.items():
        part = frame if days is None else frame[frame["ds"] > as_of - timedelta(days=days)]
        if not part.empty:
            tables.append(summarize(part).assign(window=window))
    table = pd.concat(tables, ignore_index=True)
    for col in ("step", "n", "n_paired"):
        table[col] = table[col].astype(int)
    extra = {"series": series, "as_of": utc(as_of), "refreshed_at": now}
    rows = [{**rec, **extra} for rec in records(table)]
    bulk_insert(conn, aggregates, rows)
    return len(rows)
