"""Scoring recorded steps against the prices that arrived.

:func:`score` reads each series' processed prices (:mod:`pipeline.process.stage`: the same
rows training reads, so a NaN or non-positive price never reaches the ledger) and, in one
transaction per series:

* records the actual of every step whose ``ds`` is now observed (``actuals``) and scores it;
* compares every actual it recorded before with the price the data holds now: a price that
  changed (a late correction of the source) is recorded in ``corrections``, and every step at
  that ``ds`` is scored again; a price seen twice unchanged changes nothing;
* refreshes the series' aggregates (:mod:`pipeline.ledger.aggregate`) when any score changed.

Per-step scores (:func:`pipeline.evaluation.metrics.interval_scores` and
:mod:`pipeline.evaluation.scoring` own the definitions): ``error`` = median - actual,
``abs_error``, ``scaled_error`` = abs_error / scale with scale the in-sample one-step naive MAE
of the ``LEDGER_SCALE_WINDOW`` prices up to the issue's origin (the backtest's MASE scale),
``inside_80/95`` (0/1), ``width_80/95``, ``winkler_80/95`` and ``wis``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, and_, bindparam, delete, insert, select, update

from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.evaluation.metrics import interval_scores
from pipeline.ledger.aggregate import refresh_aggregates
from pipeline.ledger.db import Ledger
from pipeline.ledger.record import LEDGER_LEVELS, utc
from pipeline.ledger.rows import as_times, insert_frame, paused_gc, raw_time
from pipeline.ledger.schema import actuals, corrections, issues, scores, steps
from pipeline.ledger.upsert import insert_ignore
from pipeline.process.stage import load_training_series
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)

_CHUNK = 500
_BAND_COLUMNS = ("mean", "lower_80", "upper_80", "lower_95", "upper_95")


@dataclass
class ScoreResult:
    """Per series: steps scored (new or rescored) and corrections seen."""

    scored: dict[str, int] = field(default_factory=dict)
    corrected: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.scored.values())


def ledger_series(ledger: Ledger) -> list[str]:
    """The names of the series that have recorded issues."""
    with ledger.reader() as conn:
        return sorted(conn.execute(select(issues.c.series).distinct()).scalars())


def score(
    ledger: Ledger,
    settings: Settings,
    series: Sequence[SeriesId] | None = None,
    *,
    prices: dict[str, pd.Series] | None = None,
    now: datetime | None = None,
) -> ScoreResult:
    """Score every observed step of ``series`` (default: every series in the ledger).

    ``prices`` (series name -> price series) replaces the processed files (the replay passes
    the data of the night it replays).
    """
    now = now or datetime.now(UTC)
    result = ScoreResult()
    names = [s.name for s in series] if series is not None else ledger_series(ledger)
    for name in names:
        if prices is not None and name in prices:
            y = prices[name]
        else:
            try:
                y = load_training_series(settings.data_dir, SeriesId.parse(name), use_all=True)
            except PipelineError as exc:
                result.skipped.append(f"{name}: {exc}")
                logger.warning("ledger: cannot score %s: %s", name, exc, extra={"series": name})
                continue
        with paused_gc(), ledger.writer() as conn:
            n, fixed = score_series(conn, name, y, settings.ledger_scale_window, now)
        result.scored[name], result.corrected[name] = n, fixed
        if n or fixed:
            logger.info(
                "ledger: scored %d step(s) of %s, %d correction(s)", n, name, fixed,
                extra={"series": name},
            )  # fmt: skip
    return result


def score_series(
    conn: Connection, series: str, y: pd.Series, window: int, now: datetime, *,
    refresh: bool = True,
) -> tuple[int, int]:  # fmt: skip
    """Score ``series`` against ``y`` inside the caller's transaction (and refresh its
    aggregates when ``refresh``); returns (scored steps, corrections)."""
    y = y.dropna()
    if y.empty:
        return 0, 0
    y.index = pd.DatetimeIndex(pd.to_datetime(y.index, utc=True))
    changed = _corrections(conn, series, y, now)
    frame = _targets(conn, series, utc(y.index[-1]), changed)
    if frame.empty:
        if changed and refresh:
            refresh_aggregates(conn, series, now)
        return 0, len(changed)
    frame = frame[frame["ds"].isin(y.index)]
    frame["actual"] = y.reindex(pd.DatetimeIndex(frame["ds"])).to_numpy(dtype=float)
    frame["scale"] = origin_scales(y, frame["origin"], window)
    rows = score_rows(frame, series)
    for start in range(0, len(changed), _CHUNK):  # the old scores of corrected prices
        part = changed[start : start + _CHUNK]
        conn.execute(delete(scores).where(scores.c.series == series, scores.c.ds.in_(part)))
    insert_frame(conn, scores, rows, {"scored_at": now})
    _remember_actuals(conn, series, frame, now)
    if refresh:
        refresh_aggregates(conn, series, now)
    return len(rows), len(changed)


def _corrections(conn: Connection, series: str, y: pd.Series, now: datetime) -> list[datetime]:
    """Record every stored actual of ``series`` whose price changed; returns their ``ds``."""
    stored = conn.execute(
        select(raw_time(actuals.c.ds), actuals.c.price).where(actuals.c.series == series)
    ).all()
    if not stored:
        return []
    ds = as_times(r[0] for r in stored)
    old = np.array([r[1] for r in stored], dtype=float)
    new = y.reindex(ds).to_numpy(dtype=float)
    moved = np.isfinite(new) & ~np.isclose(new, old, rtol=1e-12, atol=0.0)
    changed = [utc(t) for t in ds[moved]]
    if changed:
        fixes = [
            {"series": series, "ds": when, "old_price": a, "new_price": b, "seen_at": now}
            for when, a, b in zip(changed, old[moved].tolist(), new[moved].tolist(), strict=True)
        ]
        conn.execute(insert(corrections), fixes)
        conn.execute(
            update(actuals)
            .where(actuals.c.series == series, actuals.c.ds == bindparam("at"))
            .values(price=bindparam("fixed"), seen_at=now),
            [{"at": f["ds"], "fixed": f["new_price"]} for f in fixes],
        )
        logger.warning(
            "ledger: %d corrected price(s) of %s (first %s): rescoring their steps",
            len(changed), series, changed[0].isoformat(), extra={"series": series},
        )  # fmt: skip
    return changed


def _targets(
    conn: Connection, series: str, last: datetime, changed: list[datetime]
) -> pd.DataFrame:
    """Unscored observed steps of ``series``, plus every step at a corrected ``ds``."""
    cols = [steps.c.issue, steps.c.step, raw_time(steps.c.ds), *(steps.c[c] for c in _BAND_COLUMNS)]
    base = select(*cols, raw_time(issues.c.origin), issues.c.model).join(
        issues, issues.c.id == steps.c.issue
    )
    unscored = base.outerjoin(
        scores, and_(scores.c.issue == steps.c.issue, scores.c.step == steps.c.step)
    ).where(issues.c.series == series, steps.c.ds <= last, scores.c.issue.is_(None))
    rows: list[Any] = list(conn.execute(unscored).all())
    for start in range(0, len(changed), _CHUNK):
        part = changed[start : start + _CHUNK]
        rows += conn.execute(base.where(issues.c.series == series, steps.c.ds.in_(part))).all()
    names = ["issue", "step", "ds", *_BAND_COLUMNS, "origin", "model"]
    frame = pd.DataFrame([tuple(r) for r in rows], columns=names)
    if frame.empty:
        return frame
    frame = frame.drop_duplicates(["issue", "step"])
    frame["ds"] = as_times(frame["ds"])
    frame["origin"] = as_times(frame["origin"])
    return frame.reset_index(drop=True)


def origin_scales(y: pd.Series, origins: pd.Series, window: int) -> np.ndarray:
    """Per origin: the mean |one-step change| of the ``window`` prices of ``y`` up to it
    (:func:`pipeline.evaluation.metrics.naive_scale` of that window, computed with a cumulative
    sum); ``nan`` when fewer than two prices precede it."""
    values = y.to_numpy(dtype=float)
    diffs = np.concatenate([[0.0], np.abs(np.diff(values))])
    csum = np.cumsum(diffs)
    pos = (
        np.searchsorted(y.index.to_numpy(), pd.DatetimeIndex(origins).to_numpy(), side="right") - 1
    )
    first = np.maximum(pos - window + 1, 0)  # first price of the window
    count = pos - first  # diffs inside the window
    total = csum[np.maximum(pos, 0)] - csum[first]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where((count > 0) & (pos >= 0), total / np.maximum(count, 1), np.nan)
    return np.where(scale > 0, scale, np.nan)


def score_rows(frame: pd.DataFrame, series: str) -> pd.DataFrame:
    """The ``scores`` rows of ``frame`` (steps with ``actual`` and ``scale``), but
    ``scored_at``."""
    y = frame["actual"].to_numpy(dtype=float)
    per = interval_scores(y, frame, LEDGER_LEVELS)
    error = frame["mean"].to_numpy(dtype=float) - y
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.abs(error) / frame["scale"].to_numpy(dtype=float)
    columns = {
        "error": error,
        "abs_error": np.abs(error),
        "scaled_error": scaled,
        "inside_80": per["coverage_80"],
        "inside_95": per["coverage_95"],
        "width_80": per["width_80"],
        "width_95": per["width_95"],
        "winkler_80": per["winkler_80"],
        "winkler_95": per["winkler_95"],
        "wis": per["wis"],
    }
    return pd.DataFrame(
        {
            "issue": frame["issue"].astype(int).to_numpy(),
            "step": frame["step"].astype(int).to_numpy(),
            "series": series,
            "model": frame["model"].to_numpy(),
            "origin": pd.DatetimeIndex(frame["origin"]).tz_convert("UTC"),
            "ds": pd.DatetimeIndex(frame["ds"]).tz_convert("UTC"),
            "actual": y,
            "scale": frame["scale"].to_numpy(dtype=float),
            **columns,
        }
    )


def _remember_actuals(conn: Connection, series: str, frame: pd.DataFrame, now: datetime) -> None:
    seen = frame.drop_duplicates("ds")
    rows = [
        {"series": series, "ds": utc(ds), "price": float(p), "seen_at": now}
        for ds, p in zip(seen["ds"], seen["actual"], strict=True)
    ]
    if rows:
        conn.execute(insert_ignore(conn, actuals, ["series", "ds"]), rows)
