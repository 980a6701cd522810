"""The ledger's read API, for the service, the metrics and the promotion rule.

Contract (every function):

* takes an open :class:`~pipeline.ledger.db.Ledger` and a series name (``bitcoin-usd-1d``);
* runs inside one read transaction, so what it returns is one consistent snapshot;
* raises :class:`~pipeline.ledger.db.LedgerError` when the database cannot be read: callers
  that must keep working without the ledger (predictions) treat that as "unknown";
* returns frozen dataclasses of plain values (floats are ``None`` where undefined).

:func:`leaderboard` and :func:`trust_summary` read only the precomputed ``aggregates`` table (a
handful of rows, whatever the size of the ledger); :func:`served_at` reads one indexed row of
``issues``; :func:`paired_comparison` reads the matured scores of two models (for the nightly
promotion, not for requests).

Trust status (:func:`trust_status`, thresholds are settings):

* ``unknown`` -- fewer than ``TRUST_MIN_POINTS`` matured points in ``TRUST_WINDOW``, or none;
* ``degraded`` -- live 95% coverage significantly below nominal (the upper end of its Wilson
  interval is under 95%), or WIS over naive's above ``TRUST_MAX_WIS_RATIO``;
* ``ok`` -- otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy import Connection, and_, select

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.evaluation.scoring import diebold_mariano
from pipeline.ledger.aggregate import WINDOWS
from pipeline.ledger.db import Ledger
from pipeline.ledger.record import utc
from pipeline.ledger.schema import aggregates, issues, scores

TrustStatus = Literal["ok", "degraded", "unknown"]

#: The figures of a leaderboard row (columns of ``aggregates``).
ROW_FIELDS: tuple[str, ...] = (
    "n", "coverage_80", "coverage_80_low", "coverage_80_high", "coverage_95", "coverage_95_low",
    "coverage_95_high", "width_80", "width_95", "winkler_80", "winkler_95", "wis", "mase", "bias",
    "n_paired", "width_80_ratio", "width_95_ratio", "winkler_80_ratio", "winkler_95_ratio",
    "wis_ratio", "mase_ratio",
)  # fmt: skip


@dataclass(frozen=True)
class LeaderboardRow:
    model: str
    champion: bool
    figures: dict[str, float | int | None]
    steps: dict[int, dict[str, float | int | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Leaderboard:
    """A series' models over one window, best WIS ratio first (``None`` ratios last)."""

    series: str
    window: str
    as_of: datetime | None
    champion: str | None
    rows: list[LeaderboardRow]


@dataclass(frozen=True)
class TrustSummary:
    series: str
    model: str
    window: str
    coverage_95: float | None
    n: int
    wis_ratio: float | None
    status: TrustStatus
    reason: str
    as_of: datetime | None


@dataclass(frozen=True)
class ServedIssue:
    """What the champion served at a time: the newest champion issue recorded by then."""

    series: str
    model: str
    version: str
    issue_id: str
    issued_at: datetime
    origin: datetime
    forecast_sha256: str
    model_sha256: str
    path: str


@dataclass(frozen=True)
class PairedComparison:
    """Live WIS of ``model`` against ``reference`` on their last ``n`` common matured points."""

    series: str
    model: str
    reference: str
    n: int
    wis: float | None
    reference_wis: float | None
    ratio: float | None
    p_better: float | None  # one-sided Diebold-Mariano: evidence that ``model`` is better


def _value(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _champion(conn: Connection, series: str) -> str | None:
    row = conn.execute(
        select(issues.c.model)
        .where(issues.c.series == series, issues.c.champion.is_(True))
        .order_by(issues.c.issued_at.desc(), issues.c.id.desc())
        .limit(1)
    ).first()
    return row.model if row is not None else None


def leaderboard(
    ledger: Ledger, series: str, *, model: str | None = None, window: str = "30d",
    steps: bool = False,
) -> Leaderboard:  # fmt: skip
    """The live leaderboard of ``series`` (one ``model`` if given) over ``window``; with
    ``steps`` each row also carries its per-step figures."""
    if window not in WINDOWS:
        raise UsageError(f"unknown window {window!r}: use {', '.join(WINDOWS)}")
    query = select(aggregates).where(aggregates.c.series == series, aggregates.c.window == window)
    if model is not None:
        query = query.where(aggregates.c.model == model)
    if not steps:
        query = query.where(aggregates.c.step == 0)
    with ledger.reader() as conn:
        rows = conn.execute(query).all()
        champion = _champion(conn, series)
    pooled: dict[str, Any] = {}
    per_step: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        figures = {k: _value(getattr(r, k)) for k in ROW_FIELDS}
        if r.step == 0:
            pooled[r.model] = (r, figures)
        else:
            per_step.setdefault(r.model, {})[int(r.step)] = figures
    board = [
        LeaderboardRow(name, name == champion, figs, per_step.get(name, {}))
        for name, (_, figs) in pooled.items()
    ]
    board.sort(
        key=lambda row: (row.figures["wis_ratio"] is None, row.figures["wis_ratio"] or 0, row.model)
    )
    as_of = max((utc(r.as_of) for r, _ in pooled.values()), default=None)
    return Leaderboard(series, window, as_of, champion, board)


def trust_status(
    coverage_high: float | None, n: int, wis_ratio: float | None, settings: Settings
) -> tuple[TrustStatus, str]:
    """The status and its reason (see the module docstring)."""
    if n < settings.trust_min_points:
        return "unknown", f"{n} matured point(s), {settings.trust_min_points} needed"
    if coverage_high is not None and coverage_high < 0.95:
        return "degraded", f"95% coverage is significantly low (upper bound {coverage_high:.1%})"
    if wis_ratio is not None and wis_ratio > settings.trust_max_wis_ratio:
        return "degraded", f"WIS is {wis_ratio:.2f}x naive's (limit {settings.trust_max_wis_ratio})"
    return "ok", f"{n} matured points in line with the nominal coverage"


def trust_summary(ledger: Ledger, series: str, model: str, settings: Settings) -> TrustSummary:
    """Live 95% coverage and its count over ``TRUST_WINDOW``, WIS ratio to naive, status."""
    window = settings.trust_window
    with ledger.reader() as conn:
        row = conn.execute(
            select(aggregates).where(
                aggregates.c.series == series, aggregates.c.model == model,
                aggregates.c.window == window, aggregates.c.step == 0,
            )
        ).first()  # fmt: skip
    if row is None:
        status, reason = trust_status(None, 0, None, settings)
        return TrustSummary(series, model, window, None, 0, None, status, reason, None)
    status, reason = trust_status(
        _value(row.coverage_95_high), int(row.n), _value(row.wis_ratio), settings
    )
    return TrustSummary(
        series, model, window, _value(row.coverage_95), int(row.n), _value(row.wis_ratio),
        status, reason, utc(row.as_of),
    )  # fmt: skip


def trust_summaries(ledger: Ledger, settings: Settings) -> list[TrustSummary]:
    """:func:`trust_summary` of every (series, model) with aggregates (for metrics)."""
    with ledger.reader() as conn:
        pairs = conn.execute(
            select(aggregates.c.series, aggregates.c.model)
            .distinct()
            .order_by(aggregates.c.series, aggregates.c.model)
        ).all()
    return [trust_summary(ledger, s, m, settings) for s, m in pairs]


def served_at(ledger: Ledger, series: str, when: datetime) -> ServedIssue | None:
    """The champion issue of ``series`` that was newest at ``when`` (``None`` before any)."""
    with ledger.reader() as conn:
        row = conn.execute(
            select(issues)
            .where(
                issues.c.series == series, issues.c.champion.is_(True),
                issues.c.issued_at <= utc(when),
            )
            .order_by(issues.c.issued_at.desc(), issues.c.id.desc())
            .limit(1)
        ).first()  # fmt: skip
    if row is None:
        return None
    return ServedIssue(
        row.series, row.model, row.version, row.issue_id, utc(row.issued_at), utc(row.origin),
        row.forecast_sha256, row.model_sha256, row.path,
    )  # fmt: skip


def paired_comparison(
    ledger: Ledger, series: str, model: str, reference: str, last_n: int
) -> PairedComparison:
    """WIS of ``model`` vs ``reference`` on the ``last_n`` newest (origin, step) points both
    scored (per point, several issues of one origin are averaged)."""
    cols = [scores.c.model, scores.c.origin, scores.c.step, scores.c.ds, scores.c.wis]
    with ledger.reader() as conn:
        rows = conn.execute(
            select(*cols).where(
                and_(scores.c.series == series, scores.c.model.in_([model, reference]))
            )
        ).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=["model", "origin", "step", "ds", "wis"])
    empty = PairedComparison(series, model, reference, 0, None, None, None, None)
    if frame.empty:
        return empty
    frame["ds"] = pd.to_datetime(frame["ds"], utc=True)
    frame["origin"] = pd.to_datetime(frame["origin"], utc=True)
    wide = frame.pivot_table(
        index=["ds", "origin", "step"], columns="model", values="wis", aggfunc="mean"
    )
    if model not in wide or reference not in wide:
        return empty
    both = wide[[model, reference]].dropna().sort_index().iloc[-last_n:]
    if both.empty:
        return empty
    a, b = both[model].to_numpy(float), both[reference].to_numpy(float)
    horizon = int(both.index.get_level_values("step").max())
    dm = diebold_mariano(a, b, horizon=horizon)
    ratio = float(a.mean() / b.mean()) if b.mean() > 0 else None
    return PairedComparison(
        series, model, reference, len(both), float(a.mean()), float(b.mean()), ratio,
        _value(dm.p_better),
    )  # fmt: skip
