"""Recording forecast issues: what every model version in the artifact store issued.

:func:`sync` walks the store (every series, model and version: its training forecast and each
issue under ``issues/``), and records each issue the ledger does not hold yet, with its steps,
in one transaction per batch. A recorded issue is keyed by ``(series, model, version,
issue_id)`` and a step by ``(issue, step)``: a retried or repeated sync adds nothing, and a sync
killed mid-write leaves whole issues only (the next one records the rest). Because the store
keeps its issues, a database outage loses nothing either: the next sync catches up.

``champion`` says whether the version was the series' champion when the issue was recorded
(sync runs right after training, refresh and the nightly cycle, so that is when it was served).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select

from pipeline.artifacts.issues import IssueInfo, list_issues, read_issue, training_issue
from pipeline.artifacts.metadata import METADATA_FILE
from pipeline.artifacts.store import ArtifactStore
from pipeline.errors import ArtifactError
from pipeline.fileio import sha256_file
from pipeline.ledger.db import Ledger
from pipeline.ledger.rows import bulk_insert
from pipeline.ledger.schema import issues, steps
from pipeline.ledger.upsert import insert_ignore
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)

#: The interval levels a recorded step carries.
LEDGER_LEVELS = (80, 95)
_BATCH = 200


@dataclass(frozen=True)
class IssueEntry:
    """One issue to record: the verified issue and what the ledger adds to it."""

    info: IssueInfo
    champion: bool
    model_sha256: str


@dataclass
class SyncResult:
    """What a sync recorded (issues per series) and what it could not read."""

    recorded: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.recorded.values())


def utc(when: datetime | pd.Timestamp) -> datetime:
    """``when`` as an aware UTC ``datetime`` (naive values are taken as UTC)."""
    if type(when) is datetime:  # the fast path: what the database returns
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    ts = pd.Timestamp(when)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def issue_row(entry: IssueEntry, now: datetime) -> dict[str, Any]:
    rec = entry.info.record
    return {
        "series": rec.series,
        "model": rec.model,
        "version": rec.version,
        "issue_id": rec.issue_id,
        "issued_at": utc(rec.issued_at),
        "origin": utc(rec.origin),
        "last_price": float(rec.last_price),
        "horizon": int(rec.horizon),
        "champion": entry.champion,
        "forecast_sha256": rec.forecast_sha256,
        "model_sha256": entry.model_sha256,
        "path": str(entry.info.path),
        "recorded_at": now,
    }


def step_rows(issue_pk: int, forecast: pd.DataFrame) -> list[dict[str, Any]]:
    cols = ["mean", *(f"{s}_{lv}" for lv in LEDGER_LEVELS for s in ("lower", "upper"))]
    values = forecast[cols].to_numpy(dtype=float).tolist()
    ds = pd.DatetimeIndex(pd.to_datetime(forecast["ds"], utc=True)).to_pydatetime()
    return [
        {"issue": issue_pk, "step": i, "ds": when, **dict(zip(cols, row, strict=True))}
        for i, (when, row) in enumerate(zip(ds, values, strict=True), start=1)
    ]


def record_issues(
    conn: Connection, entries: Iterable[IssueEntry], now: datetime | None = None
) -> int:
    """Insert ``entries`` not yet recorded (inside the caller's transaction); returns how many
    were new."""
    now = now or datetime.now(UTC)
    new = 0
    all_steps: list[dict[str, Any]] = []
    for entry in entries:
        stmt = insert_ignore(conn, issues, ["series", "model", "version", "issue_id"])
        pk = conn.execute(stmt.values(issue_row(entry, now)).returning(issues.c.id)).scalar()
        if pk is None:  # recorded before
            continue
        new += 1
        all_steps += step_rows(int(pk), entry.info.forecast)
    if all_steps:
        bulk_insert(conn, steps, all_steps)
    return new


def record(ledger: Ledger, entries: Sequence[IssueEntry], now: datetime | None = None) -> int:
    """Record ``entries`` in one transaction; returns the number of new issues."""
    with ledger.writer() as conn:
        return record_issues(conn, entries, now)


def recorded_keys(conn: Connection, series: str) -> set[tuple[str, str, str]]:
    """``(model, version, issue_id)`` of every issue of ``series`` in the ledger."""
    rows = conn.execute(
        select(issues.c.model, issues.c.version, issues.c.issue_id).where(issues.c.series == series)
    )
    return {(r.model, r.version, r.issue_id) for r in rows}


def _has_levels(info: IssueInfo) -> bool:
    return all(
        f"lower_{lv}" in info.forecast and f"upper_{lv}" in info.forecast for lv in LEDGER_LEVELS
    )


def pending_entries(
    store: ArtifactStore, series: SeriesId, known: set[tuple[str, str, str]], skipped: list[str]
) -> list[IssueEntry]:
    """Every issue of ``series`` in the store that is not in ``known``, verified."""
    pointer = store.champion(series)
    champ = (pointer.model, pointer.version) if pointer is not None else None
    out: list[IssueEntry] = []
    for model in store.list_models(series):
        for version in store.list_versions(series, model):
            folder = store.version_dir(series, model, version)
            ident = (series.name, model, version)
            wanted = [
                i for i in ("training", *list_issues(folder)) if (model, version, i) not in known
            ]
            if not wanted:
                continue
            model_sha = sha256_file(Path(folder) / METADATA_FILE)
            for issue_id in wanted:
                try:
                    info = (
                        training_issue(store.load(series, model, version))
                        if issue_id == "training"
                        else read_issue(folder, ident, issue_id)
                    )
                except ArtifactError as exc:
                    skipped.append(f"{series.name}/{model}/{version}/{issue_id}: {exc}")
                    logger.warning(
                        "ledger: not recording %s/%s/%s: %s", model, version, issue_id, exc,
                        extra={"series": series.name},
                    )  # fmt: skip
                    continue
                if not _has_levels(info):
                    skipped.append(f"{series.name}/{model}/{version}/{issue_id}: no 80/95% bands")
                    continue
                out.append(IssueEntry(info, (model, version) == champ, model_sha))
    return out


def sync(
    ledger: Ledger,
    store: ArtifactStore,
    series: Sequence[SeriesId] | None = None,
    now: datetime | None = None,
) -> SyncResult:
    """Record every issue of ``series`` (default: all in the store) that the ledger lacks."""
    result = SyncResult()
    for s in series if series is not None else store.list_series():
        with ledger.reader() as conn:
            known = recorded_keys(conn, s.name)
        entries = pending_entries(store, s, known, result.skipped)
        entries.sort(key=lambda e: (e.info.record.issued_at, e.info.record.model))
        count = 0
        for start in range(0, len(entries), _BATCH):
            count += record(ledger, entries[start : start + _BATCH], now)
        result.recorded[s.name] = count
        if count:
            logger.info(
                "ledger: recorded %d issue(s) of %s", count, s.name, extra={"series": s.name}
            )
    return result
