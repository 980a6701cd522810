"""The ingest stage: fetch one series from its source, validate, merge, write. One code path for
the CLI, ``python -m pipeline`` and the scheduler."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.config import SOURCE_CHOICES, Settings, is_valid_source
from pipeline.errors import IngestError, PipelineError, SourceUnavailableError, UsageError
from pipeline.ingest.coingecko import CoinGeckoClient
from pipeline.ingest.csv_formats import read_csv_export
from pipeline.ingest.sample import simulate
from pipeline.ingest.store import (
    empty_frame,
    find_jumps,
    format_ds,
    merge,
    normalize,
    raw_path,
    read_meta,
    read_raw,
    write_raw,
)
from pipeline.series import RAW_FREQUENCIES, SeriesId, freq_offset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What one series' ingest did."""

    series: SeriesId
    source_used: str
    rows_added: int
    rows_total: int
    path: Path
    rows_updated: int = 0
    note: str = ""


@dataclass
class _Stored:
    path: Path
    frame: pd.DataFrame
    simulated: bool

    @property
    def last_ds(self) -> pd.Timestamp | None:
        return None if self.frame.empty else self.frame["ds"].iloc[-1]


def check_source(source: str) -> str:
    """``source`` if it is a valid ``SOURCE`` value, else a :class:`UsageError`."""
    if is_valid_source(source):
        return source
    raise UsageError(f"unknown source {source!r}: use {SOURCE_CHOICES}")


def ingest_series(
    series: SeriesId,
    settings: Settings,
    *,
    source: str | None = None,
    days: int | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Ingest one series into ``<data_dir>/raw/<series>.csv`` (+ ``.meta.json``).

    ``source`` defaults to ``settings.source``. Without ``days``/``since`` a first ingest takes
    ``settings.history_days`` and later ones continue from the raw file's last timestamp.
    Raises :class:`IngestError`, :class:`DataValidationError` or :class:`UsageError`; on any
    error the existing raw file is left byte-for-byte unchanged.
    """
    source = check_source(source or settings.source)
    if series.freq not in RAW_FREQUENCIES:
        raise UsageError(
            f"{series.name}: only {' and '.join(RAW_FREQUENCIES)} are ingested "
            f"({series.freq} is built from {series.raw.freq} by processing)"
        )
    if days is not None and since is not None:
        raise UsageError("give --days or --since, not both")
    if days is not None and days < 1:
        raise UsageError(f"--days must be at least 1, got {days}")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if since is not None:
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
        if since >= now:
            raise UsageError(f"--since {since:%Y-%m-%d} is not in the past")
    path = raw_path(settings.data_dir, series)
    stored = _Stored(path, empty_frame(), False)
    if path.exists():
        meta = read_meta(path) or {}
        stored = _Stored(path, read_raw(path), bool(meta.get("simulated", False)))

    if source == "sample":
        return _ingest_sample(series, settings, stored, days, since, now, source)
    if source.startswith("csv:"):
        return _ingest_csv(series, settings, stored, Path(source[4:]), days, since)
    try:
        return _ingest_coingecko(series, settings, stored, days, since, now, source)
    except SourceUnavailableError as exc:
        if source != "auto":
            raise
        logger.warning(
            "%s: CoinGecko is unreachable, falling back to the offline SIMULATED sample: %s",
            series.name,
            exc,
            extra={"coin": series.coin},
        )
        if not stored.frame.empty and not stored.simulated:
            logger.warning(
                "%s: %s holds real data; it is kept unchanged (no simulated data is mixed in)",
                series.name,
                path,
            )
            return IngestResult(
                series, "none", 0, len(stored.frame), path, note="offline; kept existing data"
            )
        return _ingest_sample(series, settings, stored, days, since, now, source, str(exc))


def raw_series(settings: Settings) -> list[SeriesId]:
    """The raw series behind ``settings.series()``: 4h is processed from the 1h raw file."""
    seen: dict[SeriesId, None] = {}
    for one in settings.series():
        seen[one.raw] = None
    return list(seen)


def ingest_many(
    series: Sequence[SeriesId],
    settings: Settings,
    *,
    source: str | None = None,
    days: int | None = None,
    since: datetime | None = None,
) -> list[tuple[SeriesId, IngestResult | PipelineError]]:
    """Ingest each series in turn; one series' failure does not stop the others."""
    outcomes: list[tuple[SeriesId, IngestResult | PipelineError]] = []
    for one in series:
        try:
            outcomes.append(
                (one, ingest_series(one, settings, source=source, days=days, since=since))
            )
        except PipelineError as exc:
            logger.error("%s: ingest failed: %s", one.name, exc, extra={"coin": one.coin})
            outcomes.append((one, exc))
    return outcomes


def _start(
    series: SeriesId,
    settings: Settings,
    stored: _Stored,
    days: int | None,
    since: datetime | None,
    now: datetime,
) -> tuple[datetime, bool]:
    """Where a fetch starts, and whether it is an incremental continuation."""
    if since is not None:
        return since, False
    if days is not None:
        return now - timedelta(days=days), False
    if stored.last_ds is not None and not stored.simulated:
        return stored.last_ds.to_pydatetime(), True
    return now - timedelta(days=settings.history_days), False


def _ingest_coingecko(
    series: SeriesId,
    settings: Settings,
    stored: _Stored,
    days: int | None,
    since: datetime | None,
    now: datetime,
    requested: str,
) -> IngestResult:
    start, incremental = _start(series, settings, stored, days, since, now)
    client = CoinGeckoClient(settings)
    logger.info(
        "%s: fetching CoinGecko %s from %s to %s%s",
        series.name,
        series.freq,
        format_ds(start),
        format_ds(now),
        " (incremental)" if incremental else "",
        extra={"coin": series.coin},
    )
    with client:
        if series.freq == "1d" and days is not None and since is None:
            points = client.market_chart(series.coin, series.vs, days, interval="daily")
        else:
            points = client.history(series.coin, series.vs, series.freq, start, now)
    batch = normalize(points, series.freq, f"{series.name} (coingecko)")
    if batch.empty:
        if incremental:
            logger.info("%s: CoinGecko has nothing new since %s", series.name, format_ds(start))
            return IngestResult(series, "coingecko", 0, len(stored.frame), stored.path)
        raise IngestError(
            f"{series.name}: CoinGecko returned no prices between {format_ds(start)} and "
            f"{format_ds(now)}"
        )
    fetch = {"from": format_ds(start), "to": format_ds(now), "incremental": incremental}
    return _store(series, settings, stored, batch, "coingecko", False, requested, fetch)


def _ingest_csv(
    series: SeriesId,
    settings: Settings,
    stored: _Stored,
    csv_path: Path,
    days: int | None,
    since: datetime | None,
) -> IngestResult:
    if not csv_path.is_file():
        raise UsageError(f"--source csv:{csv_path}: no such file")
    batch = read_csv_export(csv_path, series.freq)
    if since is not None or days is not None:
        start = since or (batch["ds"].iloc[-1].to_pydatetime() - timedelta(days=days or 0))
        batch = batch[batch["ds"] >= pd.Timestamp(start)].reset_index(drop=True)
        if batch.empty:
            raise IngestError(f"{csv_path}: no rows on or after {format_ds(start)}")
    source = f"csv:{csv_path}"
    fetch = {"file": str(csv_path.resolve())}
    return _store(series, settings, stored, batch, source, False, source, fetch)


def _ingest_sample(
    series: SeriesId,
    settings: Settings,
    stored: _Stored,
    days: int | None,
    since: datetime | None,
    now: datetime,
    requested: str,
    fallback_reason: str | None = None,
) -> IngestResult:
    if not stored.frame.empty and not stored.simulated:
        raise UsageError(
            f"{series.name}: refusing to write SIMULATED sample data over the real data in "
            f"{stored.path}; use another --data-dir, or move that file away first"
        )
    step = freq_offset(series.freq)
    end = pd.Timestamp(now).floor(step)
    if since is not None:
        periods = int((end - pd.Timestamp(since).floor(step)) / step) + 1
    else:
        periods = int(pd.Timedelta(days=days or settings.history_days) / step)
    batch = simulate(series, periods, end, settings.sample_seed)
    logger.info(
        "%s: generated %d rows of SIMULATED sample data (seed %d) ending %s",
        series.name,
        len(batch),
        settings.sample_seed,
        format_ds(end),
        extra={"coin": series.coin},
    )
    extra: dict[str, Any] = {"seed": settings.sample_seed}
    if fallback_reason:
        extra["fallback_reason"] = fallback_reason
    return _store(series, settings, stored, batch, "sample", True, requested, extra)


def _store(
    series: SeriesId,
    settings: Settings,
    stored: _Stored,
    batch: pd.DataFrame,
    source: str,
    simulated: bool,
    requested: str,
    fetch: dict[str, Any],
) -> IngestResult:
    """Merge ``batch`` into the stored frame (or replace simulated data) and write both files."""
    label = f"{series.name} ({source})"
    replace = simulated or stored.simulated
    if replace:
        if stored.simulated and not simulated:
            logger.info("%s: replacing SIMULATED data with real data from %s", series.name, source)
        merged = batch.reset_index(drop=True)
        added, updated = len(merged), 0
    else:
        merged = merge(stored.frame, batch, label)
        old = stored.frame.set_index("ds")["price"]
        new = batch.set_index("ds")["price"]
        overlap = new.index.intersection(old.index)
        added = len(merged) - len(stored.frame)
        updated = int((new.loc[overlap] != old.loc[overlap]).sum())
    first_new = batch["ds"].iloc[0]
    for flag in find_jumps(merged, settings.max_jump):
        if pd.Timestamp(flag["ds"]) >= first_new:
            logger.warning(
                "%s: one-step move of %+.1f%% at %s (from %s) exceeds MAX_JUMP=%g; kept and "
                "flagged in meta.json",
                series.name,
                100 * flag["change"],
                flag["ds"],
                flag["prev_ds"],
                settings.max_jump,
                extra={"coin": series.coin},
            )
    meta = {
        "source": source,
        "requested_source": requested,
        "simulated": simulated,
        "last_fetch": {**fetch, "rows_in_batch": len(batch), "added": added, "updated": updated},
    }
    write_raw(stored.path, merged, series, meta, settings.max_jump)
    logger.info(
        "%s: %d row(s) added, %d updated, %d total -> %s (source %s)",
        series.name,
        added,
        updated,
        len(merged),
        stored.path,
        source,
        extra={"coin": series.coin},
    )
    return IngestResult(series, source, added, len(merged), stored.path, rows_updated=updated)
