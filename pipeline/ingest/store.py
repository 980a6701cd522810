"""Raw price files: validation rules, snapping to the UTC grid, newer-wins merge, atomic writes.

A raw file is ``data/raw/<coin>-<vs>-<freq>.csv`` with columns ``ds,price,market_cap,volume``
(``ds`` like ``2021-12-31T23:00:00Z``; sorted, unique). Beside it, ``<name>.meta.json`` records
where the data came from, its extent, gaps, flagged jumps and the CSV's sha256.

Nothing here writes anything until every rule has passed, and then only through a temporary
file and ``os.replace``: a rejected batch leaves the existing raw file byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import DataValidationError
from pipeline.fileio import atomic_write_json, atomic_write_text
from pipeline.series import SeriesId, freq_offset
from pipeline.storage.publish import published_files

logger = logging.getLogger(__name__)

COLUMNS = ["ds", "price", "market_cap", "volume"]
DS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
META_SCHEMA_VERSION = 1
#: at most this many gaps / jump flags are listed in meta.json (the counts are always exact)
MAX_LISTED = 500


def raw_path(data_dir: Path, series: SeriesId) -> Path:
    """``<data_dir>/raw/<coin>-<vs>-<freq>.csv``."""
    return Path(data_dir) / "raw" / f"{series.name}.csv"


def meta_path(path: Path) -> Path:
    """The ``.meta.json`` beside a raw CSV file."""
    return path.with_name(f"{path.stem}.meta.json")


def empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS})
    frame["ds"] = pd.to_datetime(frame["ds"], utc=True)
    return frame


def format_ds(ts: pd.Timestamp | datetime) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime(DS_FORMAT)


def read_raw(path: Path) -> pd.DataFrame:
    """Read a raw file: ``ds`` tz-aware UTC; price, market_cap, volume floats (NaN = empty)."""
    try:
        frame = pd.read_csv(path, dtype={"ds": "string"})
    except (OSError, ValueError) as exc:
        raise DataValidationError(f"cannot read raw file {path}: {exc}") from exc
    if list(frame.columns) != COLUMNS:
        raise DataValidationError(
            f"raw file {path} has columns {list(frame.columns)}, expected {COLUMNS}; "
            "move it away and ingest again"
        )
    try:
        frame["ds"] = pd.to_datetime(frame["ds"], utc=True, format="ISO8601")
        for col in COLUMNS[1:]:
            frame[col] = pd.to_numeric(frame[col]).astype("float64")
    except (ValueError, TypeError) as exc:
        raise DataValidationError(f"raw file {path} is corrupt: {exc}") from exc
    if frame["ds"].isna().any():
        raise DataValidationError(f"raw file {path} is corrupt: a row has no timestamp")
    if not frame["ds"].is_monotonic_increasing or frame["ds"].duplicated().any():
        raise DataValidationError(f"raw file {path} is not sorted by unique ds; it was edited?")
    price = frame["price"]
    if not (np.isfinite(price) & (price > 0)).all():
        raise DataValidationError(
            f"raw file {path} is corrupt: a price is missing, infinite, zero or negative"
        )
    return frame.reset_index(drop=True)


def read_meta(path: Path) -> dict[str, Any] | None:
    """The meta.json beside ``path`` (a raw CSV), or None when absent or unreadable."""
    try:
        data = json.loads(meta_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _reject(label: str, rows: pd.DataFrame, rule: str, values: pd.Series) -> None:
    first = rows.index[0]
    ts = rows.loc[first, "ds"]
    where = format_ds(ts) if isinstance(ts, pd.Timestamp) and not pd.isna(ts) else f"#{first}"
    more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
    raise DataValidationError(f"{label}: rejected, {rule} {values.loc[first]!r} at {where}{more}")


def check_prices(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Coerce columns to floats; reject non-numeric, NaN, infinite, zero or negative prices.

    ``frame`` has ``ds`` (tz-aware, may hold NaT) and ``price`` (any dtype); messages name the
    timestamp, or ``#<index>`` when it is unparseable (CSV readers index rows by file line).
    Negative or
    non-numeric market caps / volumes become empty (NaN): they are optional context only.
    """
    out = frame.copy()
    if out["ds"].isna().any():
        bad = out[out["ds"].isna()]
        raise DataValidationError(
            f"{label}: rejected, unparseable timestamp at #{bad.index[0]} ({len(bad)} row(s))"
        )
    raw_price = out["price"]
    price = pd.to_numeric(raw_price, errors="coerce").astype("float64")
    non_numeric = price.isna() & raw_price.notna()
    if isinstance(raw_price.dtype, np.dtype) and raw_price.dtype.kind == "f":
        non_numeric[:] = False
    if non_numeric.any():
        _reject(label, out[non_numeric], "non-numeric price", raw_price)
    if price.isna().any():
        _reject(label, out[price.isna()], "missing (NaN) price", raw_price)
    if np.isinf(price).any():
        _reject(label, out[np.isinf(price)], "infinite price", raw_price)
    if (price <= 0).any():
        _reject(label, out[price <= 0], "zero or negative price", raw_price)
    out["price"] = price
    for col in ("market_cap", "volume"):
        if col not in out:
            out[col] = np.nan
        values = pd.to_numeric(out[col], errors="coerce").astype("float64")
        out[col] = values.where(~(values < 0) & np.isfinite(values))
    return out[COLUMNS]


def normalize(frame: pd.DataFrame, freq: str | None, label: str) -> pd.DataFrame:
    """Validate a batch and put it on the ``freq`` grid of UTC periods.

    - prices must be numeric, finite and positive (:func:`check_prices`);
    - rows are sorted by time; exact duplicates are dropped, but two different observations
      with the same timestamp cannot be ordered and the batch is rejected;
    - each observation belongs to the period it falls in (``ds`` floored to the hour, or to
      00:00 UTC for daily data); when several fall in one period the earliest — the one
      nearest the period start — is kept. A CoinGecko daily snapshot taken late (e.g.
      ``2017-06-06 23:29:55``) therefore stays on its own day, and no day is lost or doubled.
      With ``freq=None`` rows keep their own timestamps.
    """
    checked = check_prices(frame, label)
    ordered = checked.sort_values("ds", kind="stable").reset_index(drop=True)
    same_ds = ordered["ds"].duplicated(keep=False)
    if same_ds.any():
        dup = ordered[same_ds]
        conflicting = dup.groupby("ds")["price"].nunique()
        conflicting = conflicting[conflicting > 1]
        if not conflicting.empty:
            raise DataValidationError(
                f"{label}: rejected, unresolvable ordering: {int(conflicting.size)} timestamp(s) "
                f"carry different prices (first {format_ds(conflicting.index[0])}); "
                "cannot tell which observation is newer"
            )
        before = len(ordered)
        ordered = ordered.drop_duplicates("ds", keep="last").reset_index(drop=True)
        logger.info("%s: dropped %d exact duplicate row(s)", label, before - len(ordered))
    if freq is None:
        return ordered
    ordered["ds"] = ordered["ds"].dt.floor(freq_offset(freq))
    before = len(ordered)
    snapped = ordered.drop_duplicates("ds", keep="first").reset_index(drop=True)
    if len(snapped) < before:
        logger.debug(
            "%s: %d observation(s) fell in an already-filled period; kept the earliest",
            label,
            before - len(snapped),
        )
    return snapped


def merge(existing: pd.DataFrame, batch: pd.DataFrame, label: str) -> pd.DataFrame:
    """Newer-wins merge on ``ds``: ``batch`` replaces stored rows with the same ``ds``.

    Rejects a batch whose newest point is older than the newest stored one (an out-of-date
    source must not roll the file back). Every stored ``ds`` is kept.
    """
    if existing.empty:
        return batch.reset_index(drop=True)
    if not batch.empty and batch["ds"].max() < existing["ds"].max():
        raise DataValidationError(
            f"{label}: rejected, stale batch: its newest point {format_ds(batch['ds'].max())} "
            f"is older than the stored newest {format_ds(existing['ds'].max())}"
        )
    both = pd.concat([existing, batch], ignore_index=True)
    merged = both.drop_duplicates("ds", keep="last").sort_values("ds", kind="stable")
    return merged.reset_index(drop=True)


def find_gaps(frame: pd.DataFrame, freq: str) -> list[dict[str, Any]]:
    """Every place where consecutive rows are more than one step apart."""
    step = freq_offset(freq)
    ds = frame["ds"].reset_index(drop=True)
    diffs = ds.diff()
    gaps = []
    for i in np.flatnonzero((diffs > step).to_numpy()):
        gaps.append(
            {
                "after": format_ds(ds[i - 1]),
                "before": format_ds(ds[i]),
                "missing": int(diffs[i] / step) - 1,
            }
        )
    return gaps


def find_jumps(frame: pd.DataFrame, max_jump: float) -> list[dict[str, Any]]:
    """Single steps whose relative price change exceeds ``max_jump`` (e.g. 0.8 = ±80%)."""
    price = frame["price"].reset_index(drop=True)
    change = price / price.shift(1) - 1.0
    flags = []
    for i in np.flatnonzero((change.abs() > max_jump).to_numpy()):
        flags.append(
            {
                "rule": "max_jump",
                "ds": format_ds(frame["ds"].iloc[i]),
                "prev_ds": format_ds(frame["ds"].iloc[i - 1]),
                "prev_price": float(price[i - 1]),
                "price": float(price[i]),
                "change": round(float(change[i]), 6),
            }
        )
    return flags


def to_csv_text(frame: pd.DataFrame) -> str:
    out = frame[COLUMNS].copy()
    out["ds"] = out["ds"].dt.strftime(DS_FORMAT)
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def write_raw(
    path: Path, frame: pd.DataFrame, series: SeriesId, meta: dict[str, Any], max_jump: float
) -> dict[str, Any]:
    """Write the CSV then its meta.json, each atomically; returns the meta written."""
    text = to_csv_text(frame)
    gaps = find_gaps(frame, series.freq)
    flags = find_jumps(frame, max_jump)
    full = {
        "schema_version": META_SCHEMA_VERSION,
        "series": series.name,
        "coin": series.coin,
        "vs": series.vs,
        "freq": series.freq,
        **meta,
        "last_ingest_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": len(frame),
        "first_ds": format_ds(frame["ds"].iloc[0]) if len(frame) else None,
        "last_ds": format_ds(frame["ds"].iloc[-1]) if len(frame) else None,
        "gap_count": len(gaps),
        "gaps": gaps[:MAX_LISTED],
        "flag_count": len(flags),
        "flags": flags[:MAX_LISTED],
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }
    atomic_write_text(path, text)
    atomic_write_json(meta_path(path), full)
    published_files([path, meta_path(path)])  # an s3:// DATA_DIR: each file one PUT
    return full
